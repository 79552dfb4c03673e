"""uvicorn's HTTP/1.1 protocol, with a limit on how long a connection may take to send a request's
headers.

uvicorn closes a kept-alive connection that stays idle after a response, but waits for ever on a
new connection that sends nothing, or sends its headers a byte at a time: enough of those exhaust
the server's file descriptors and lock everyone out. Here such a connection is closed once
`header_timeout_s` has passed without a whole request's headers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    header_timeout_s = 10.0  # `protocol_with_header_timeout` makes a subclass with the setting

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._cycle_when_armed: Any = None
        super().connection_made(transport)
        self._arm_header_timer()

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


def protocol_with_header_timeout(seconds: float) -> type[GuardedH11Protocol]:
    return type("HeaderTimeoutH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": seconds})
