"""What the app refuses before a route sees a request, and what a request cut short gets:
Host values that do not name this server, pages on other origins, and the server stopping; and
the connection of a request answered before its body was read is not kept. Each is an ASGI
middleware; `create_app` adds them."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from actionrec.serve.logs import printable
from actionrec.serve.schemas import error_answer

log = logging.getLogger("actionrec.server")


async def refuse(scope: dict, receive: Callable, send: Callable, status: int, detail: str, reason: str) -> None:
    """Answer before the app sees the request: an error answer, or a WebSocket closed with 1008."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": reason})
        return
    await error_answer(status, detail, reason)(scope, receive, send)


class HostCheck:
    """Serve only requests whose Host header names this server. Without it, a web page anywhere
    could reach a server on localhost through DNS rebinding (its own name, pointed at 127.0.0.1)."""

    def __init__(self, app: Any, hosts: list[str]) -> None:
        self.app = app
        self.any = "*" in hosts
        self.hosts = {host.lower() for host in hosts}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self.any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
        name = host_name(host)
        if host in self.hosts or (name is not None and name in self.hosts):
            await self.app(scope, receive, send)
            return
        await refuse(scope, receive, send, 400, f"This server does not answer to the host {printable(host)!r}. Use "
                     "its address as configured (--allowed-hosts).", "host_not_allowed")


class AnswerWhenCutShort:
    """A request still running when the server stops after its drain timeout is cancelled; it
    gets 503 JSON with Retry-After (a retry reaches a server that is up), not uvicorn's 500 and a
    traceback in the log."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except asyncio.CancelledError:
            if started:
                raise
            log.warning("a request still running when the server stopped was answered 503")
            response = error_answer(503, "The server stopped before it could finish this request. Send it again.",
                                    "shutting_down", {"Connection": "close"})
            await response(scope, receive, send)


class CloseWhenBodyUnread:
    """An answer given before its request's body was read (refused from the headers, or part way
    through) says `Connection: close`: the server reads no body it refused just to keep the
    connection, and the client knows not to send another request on it. The connection then closes
    lingering (see `actionrec.serve.protocol`), so that a client still sending gets the answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not has_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        body_read = False

        async def receive_and_note() -> dict:
            nonlocal body_read
            message = await receive()
            body_read = body_read or message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_closing(message: dict) -> None:
            if message["type"] == "http.response.start" and not body_read:
                headers = [(name, value) for name, value in message.get("headers", []) if name.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive_and_note, send_closing)


def has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request with these (lower-case, as ASGI gives them) headers has a body to read."""
    named = dict(headers)
    length = named.get(b"content-length", b"")
    return b"transfer-encoding" in named or (length.isdigit() and int(length) > 0)


class OriginCheck:
    """Refuse what a web page elsewhere can make a browser send without asking first: a WebSocket,
    or a request that changes something (a "simple" POST, with no content type or multipart, needs
    no CORS preflight), whose Origin is neither this server's own nor one of `--cors-origins`, as
    Jupyter does. Clients that are not browsers send no Origin, and pass."""

    SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: Any, origins: list[str], hosts: list[str]) -> None:
        self.app = app
        self.origins = {origin.rstrip("/").lower() for origin in origins}
        self.hosts = {host.lower() for host in hosts if host != "*"}

    def allowed(self, origin: str, headers: dict[bytes, bytes]) -> bool:
        """The server's own page: its origin names the Host the browser reached (behind a proxy, the
        `X-Forwarded-Host` it passes on, or a name of `--allowed-hosts`), or it is a CORS origin."""
        origin = origin.rstrip("/").lower()
        if origin in self.origins or "*" in self.origins:
            return True
        parts = urlsplit(origin)
        reached = {headers.get(name, b"").decode("latin-1").split(",")[0].strip().lower()
                   for name in (b"host", b"x-forwarded-host")} - {""}
        return parts.netloc in reached or (parts.hostname or "") in self.hosts

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("method") in self.SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if origin is None or self.allowed(origin.decode("latin-1"), headers):
            await self.app(scope, receive, send)
            return
        await refuse(scope, receive, send, 403, f"Requests from pages on {printable(origin.decode('latin-1')[:200])!r} "
                     "are not accepted. Serve the page from this server, or add its origin to --cors-origins.",
                     "origin_not_allowed")


HOST_PATTERN = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(:[0-9]{1,5})?$")


def host_name(host: str) -> str | None:
    """The name in a Host header value (`name` or `name:port`, `[v6]:port`), or None when the
    value is not one: `localhost:80@evil.example`, `127.0.0.1:evil` and `localhost:` are not."""
    match = HOST_PATTERN.match(host)
    return match.group(1) if match else None
