"""uvicorn's HTTP/1.1 protocol, guarded where a connection itself can hurt the server.

- **Slow headers.** uvicorn closes a kept-alive connection that stays idle after a response, but
  waits for ever on a new connection that sends nothing, or sends its headers a byte at a time:
  enough of those exhaust the server's file descriptors. Such a connection is closed once
  `header_timeout_s` has passed without a whole request's headers.
- **Too many connections.** Past `max_connections` (set below the process's descriptor limit), a
  new connection is answered 503 and closed at once, so descriptors stay for the uploads' files
  and the workers' pipes, and `accept()` never fails for want of one.
- **Ambiguous framing.** A request with both Content-Length and Transfer-Encoding, bare-LF line
  endings or a folded header line is read differently by proxies and servers (request
  smuggling); RFC 9112 lets a server refuse it and says to close the connection. It gets 400
  and the connection is closed, before anything on it, pipelined or not, is answered.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 64 * 1024  # h11 refuses longer heads itself
ACCEPT_BACKLOG = 128  # the listening socket's backlog (uvicorn's default, 2048, is also how many asyncio accepts at once)
_BARE_LF = re.compile(rb"(?<!\r)\n")
_FOLDED = re.compile(rb"\r\n[ \t]")


def framing_problem(head: bytes) -> str | None:
    """What makes a request head's framing ambiguous, or None: `head` runs from the request line
    through the blank line that ends the headers."""
    if _BARE_LF.search(head):
        return "a line ends in LF without CR"
    if _FOLDED.search(head):
        return "a header is folded over two lines"
    names = {line.split(b":", 1)[0].strip().lower() for line in head.split(b"\r\n")[1:] if line}
    if b"content-length" in names and b"transfer-encoding" in names:
        return "it has both Content-Length and Transfer-Encoding"
    return None


def head_problem(buffered: bytes) -> str | None:
    """`framing_problem` of the request head at the start of `buffered`, once its end has come."""
    ends = [at for at in (buffered.find(b"\r\n\r\n"), buffered.find(b"\n\n")) if at != -1]
    return framing_problem(buffered[:min(ends) + 4]) if ends else None


def _answer(status: str, detail: str, reason: str, extra: str = "") -> bytes:
    body = json.dumps({"detail": detail, "reason": reason}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n{extra}\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    header_timeout_s = 10.0  # `guarded_protocol` makes a subclass with the settings
    max_connections: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._cycle_when_armed: Any = None
        self._framing_problem: str | None = None
        super().connection_made(transport)
        self.conn.next_event = self._check_framing_then(self.conn.next_event)  # type: ignore[method-assign]
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            transport.write(_answer("503 Service Unavailable", "The server has as many connections open as it "
                                    "allows. Try again in a few seconds.", "too_many_connections",
                                    "retry-after: 2\r\n"))
            transport.close()
            return
        self._arm_header_timer()

    # -- the time to send headers ------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._cycle_when_armed = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is self._cycle_when_armed:  # no new request began since the timer started
            self.transport.close()

    # -- the framing of each request's head ----------------------------------------------------

    def _check_framing_then(self, next_event: Callable[[], Any]) -> Callable[[], Any]:
        """h11's `next_event`, refusing a request whose head is ambiguous before h11 reads it. The
        head is checked where h11 starts every request (the first, a pipelined one, one after an
        answer given before the last body was read), never in a body."""
        def checked() -> Any:
            if self.conn.their_state is h11.IDLE:
                self._framing_problem = head_problem(bytes(self.conn.trailing_data[0][:MAX_HEAD_BYTES]))
                if self._framing_problem is not None:
                    raise h11.RemoteProtocolError(self._framing_problem)
            return next_event()

        return checked

    def send_400_response(self, msg: str) -> None:
        if self._framing_problem is None:
            super().send_400_response(msg)
            return
        self.transport.write(_answer("400 Bad Request", "The request was refused because its framing is ambiguous: "
                                     f"{self._framing_problem}. The connection is closed.", "bad_framing"))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._cycle_when_armed:
            self._disarm_header_timer()  # a request's headers are in: the body has its own limits

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm_header_timer()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # kept alive: the next request's headers have the same limit

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


def guarded_protocol(header_timeout_s: float, max_connections: int | None) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout_s": header_timeout_s, "max_connections": max_connections})


def connection_limit(max_uploads: int, max_live: int, workers: int) -> int:
    """Connections the descriptor limit leaves room for, after the descriptors that uploads' files,
    live streams, decode workers and the model need. The soft limit is raised to the hard one
    first (up to 65,536), as servers do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    # asyncio accepts up to the listen backlog's worth of connections at once, before any is seen
    reserve = max_uploads + max_live + 8 * workers + 64 + ACCEPT_BACKLOG
    return max(16, soft - reserve)
