"""uvicorn's HTTP/1.1 protocol, guarded where a connection itself can hurt the server.

- **Slow headers.** uvicorn closes a kept-alive connection that stays idle after a response, but
  waits for ever on a new connection that sends nothing, or sends its headers a byte at a time:
  enough of those exhaust the server's file descriptors. Such a connection is closed once
  `header_timeout_s` has passed without a whole request's headers.
- **Too many connections.** Past `max_connections` (set below the process's descriptor limit), a
  new connection is answered 503 and closed inside `accept()` itself, so descriptors stay for the
  uploads' files and the workers' pipes, and `accept()` never fails for want of one. Refusing it
  later, in the protocol, is too late: asyncio accepts a whole backlog of connections per wake-up
  and closes a refused one only a loop turn after that, so several backlogs' worth of descriptors
  can be open at once.
- **Answers given before the body is in.** A request refused early (413, 507, 401) is answered
  while its client may still be sending the body; closing the socket then, with bytes unread,
  resets the connection, and a client that reads its answer only after sending everything (Python's
  `http.client`) gets ECONNRESET instead of the answer. Such a connection closes as nginx's
  lingering close does: the answer is sent and the write side shut, then whatever the client still
  sends is read and thrown away until it stops (`LINGER_IDLE_S` without a byte), finishes, or
  `LINGER_S` have passed, and only then is the socket closed.
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
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 64 * 1024  # h11 refuses longer heads itself
# the listening socket's backlog (uvicorn's default, 2048, is also how many asyncio accepts at once)
ACCEPT_BACKLOG = 128
LINGER_S = 30.0  # the longest an answered connection is read from before it is closed (nginx's lingering_time)
LINGER_IDLE_S = 5.0  # ... or once it has sent nothing for this long (nginx's lingering_timeout)
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


TOO_MANY_CONNECTIONS = _answer("503 Service Unavailable", "The server has as many connections open as it allows. "
                               "Try again in a few seconds.", "too_many_connections", "retry-after: 2\r\n")


class OpenConnections:
    """How many accepted connections are open, across every listening socket of one server."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()  # a collected connection is released in whichever thread collects it

    def take(self) -> bool:
        with self._lock:
            if self.count >= self.limit:
                return False
            self.count += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.count -= 1


class _CountedConnection(socket.socket):
    """An accepted connection that gives its place back when it is closed (or collected unclosed)."""

    release: Callable[[], Any] = staticmethod(lambda: None)  # a dup() holds no place of its own

    def _real_close(self, *args: Any) -> None:
        super()._real_close(*args)  # type: ignore[misc]
        self.release()


class ConnectionLimitingSocket(socket.socket):
    """A listening socket whose `accept()` hands out a connection only while `connections` has room;
    one past that is answered `TOO_MANY_CONNECTIONS` and closed before `accept()` returns. asyncio's
    event loop calls `accept()` on the socket it serves, so this works under asyncio (not uvloop)."""

    connections: OpenConnections

    def accept(self) -> tuple[socket.socket, Any]:
        for _ in range(ACCEPT_BACKLOG):  # refuse a flood a backlog at a time, then let the loop go on
            fd, address = self._accept()  # type: ignore[attr-defined]  # BlockingIOError once none wait
            if self.connections.take():
                connection = _CountedConnection(self.family, self.type, self.proto, fileno=fd)
                connection.release = weakref.finalize(connection, self.connections.release)
                return connection, address
            _refuse(socket.socket(self.family, self.type, self.proto, fileno=fd))
        raise BlockingIOError("connections refused this turn; the rest wait for the next")


def _refuse(connection: socket.socket) -> None:
    try:
        connection.send(TOO_MANY_CONNECTIONS, socket.MSG_DONTWAIT)
        # Closing with unread data resets the connection, which can throw the answer away before
        # the client reads it: read what has come (once, so a client streaming a body cannot hold
        # the event loop here).
        connection.recv(65536, socket.MSG_DONTWAIT)
    except OSError:
        pass
    finally:
        connection.close()


def listening_sockets(host: str, port: int, max_connections: int) -> list[ConnectionLimitingSocket]:
    """Bound sockets for `host` and `port` (one per address a name resolves to, as asyncio binds
    them), taking at most `max_connections` connections between them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    connections = OpenConnections(max_connections)
    bound: list[ConnectionLimitingSocket] = []
    try:
        for family, address in dict.fromkeys((info[0], info[4]) for info in infos):
            sock = ConnectionLimitingSocket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.connections = connections
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = sock.getsockname()[1]  # with port 0, every address on the port the first was given
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


class _LingerOnClose:
    """The connection's transport as uvicorn sees it, but for `close()`, which closes it with a
    lingering close while the client is still sending the body of an answered request."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedH11Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_connection()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedH11Protocol(H11Protocol):
    header_timeout_s = 10.0  # `guarded_protocol` makes a subclass with the settings

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._cycle_when_armed: Any = None
        self._framing_problem: str | None = None
        self.lingering = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_started = self._last_read = 0.0
        super().connection_made(transport)
        self._wire = transport
        self.transport = _LingerOnClose(transport, self)  # type: ignore[assignment]
        self.conn.next_event = self._check_framing_then(self.conn.next_event)  # type: ignore[method-assign]
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

    # -- closing while the client still sends -------------------------------------------------

    def close_connection(self) -> None:
        """Close the connection; with a lingering close where the client is still sending a
        request's body (see the module's docstring). Closing a lingering connection closes it now."""
        if self.lingering or self._wire.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            self._wire.close()
            return
        self.lingering = True
        self._disarm_header_timer()
        self._unset_keepalive_if_required()
        self._linger_started = self._last_read = self.loop.time()
        if self._wire.can_write_eof():
            self._wire.write_eof()  # once the answer is out: the client sees its end
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_IDLE_S, self._check_linger)

    def _check_linger(self) -> None:
        ends = min(self._last_read + LINGER_IDLE_S, self._linger_started + LINGER_S)
        now = self.loop.time()
        if now >= ends:
            self._linger_timer = None
            self._wire.close()
        else:
            self._linger_timer = self.loop.call_later(ends - now, self._check_linger)

    def data_received(self, data: bytes) -> None:
        if self.lingering:  # the rest of an answered request's body: read and dropped
            self._last_read = self.loop.time()
            return
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._cycle_when_armed:
            self._disarm_header_timer()  # a request's headers are in: the body has its own limits

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm_header_timer()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing() and self.conn.their_state is h11.SEND_BODY:
            self.transport.close()  # answered before its body came in: not kept alive, and closed lingering
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # kept alive: the next request's headers have the same limit

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)


def guarded_protocol(header_timeout_s: float) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})


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
    # a refused connection holds a descriptor only inside accept()
    reserve = max_uploads + max_live + 8 * workers + 64 + 1
    return max(16, soft - reserve)
