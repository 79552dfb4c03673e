"""The app: wires settings, the model and the prediction service to the routes, and maps every
failure to its HTTP answer in one place. `serve` runs it with uvicorn.

Uploads are untrusted. Each is decoded in a separate worker process, with a time limit, and then
classified on a thread, so a bad file costs one worker process and a 422, never the server. At
most `max_pending` prediction requests are in progress at once; more get 503 with Retry-After.
Errors are always `{"detail": "...", "reason": "..."}`: one readable string, and a stable code.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import NoReturn

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from actionrec.errors import (
    DecodeCrashed,
    DecodeFailed,
    DecodersBusy,
    DecodeTimedOut,
    InferenceFailed,
    ModelFileError,
    RegionsError,
    RequestError,
    ServerBusy,
    VideoError,
    WorkerLost,
)
from actionrec.modelfile.hub import resolve_model
from actionrec.runtime.network import load_network
from actionrec.runtime.precision import choose_model_file, load_chosen
from actionrec.runtime.recognizer import Recognizer, choose_providers
from actionrec.serve import live
from actionrec.serve.guards import AnswerWhenCutShort, CloseWhenBodyUnread, HostCheck, OriginCheck
from actionrec.serve.logs import SafeLogText, Throttle, configure_logging
from actionrec.serve.metrics import RequestLogMiddleware
from actionrec.serve.protocol import ACCEPT_BACKLOG, connection_limit, guarded_protocol, listening_sockets
from actionrec.serve.routes import WEB_DIR, router
from actionrec.serve.schemas import error_answer, for_clients
from actionrec.serve.service import PredictionService
from actionrec.serve.settings import ServerSettings
from actionrec.serve.teaching import router as teaching_router
from actionrec.serve.teaching_data import Teaching
from actionrec.serve.workers import DecodeFunction
from actionrec.video import DecodeLimits, stream_prediction_frames

log = logging.getLogger("actionrec.server")


def create_app(settings: ServerSettings, recognizer: Recognizer | None = None, *,
               decode: DecodeFunction = stream_prediction_frames) -> FastAPI:
    """Build the app. The model loads now (ModelFileError if it cannot); workers start with the app.

    `recognizer` replaces the one `settings.model_path` would load (tests pass a fake). `decode`
    runs in the worker processes and must be a module-level function with
    `stream_prediction_frames`' signature; tests pass one that crashes or stalls on purpose.
    """
    if recognizer is None:
        if settings.model_path is None:
            raise ModelFileError("No model to serve: pass the path of an exported model.onnx "
                                 "(or set ACTIONREC_MODEL).")
        on_gpu = choose_providers(settings.device)[0] == "CUDAExecutionProvider"
        loaded, choice = load_chosen(
            choose_model_file(settings.model_path, settings.precision, on_gpu=on_gpu),
            lambda chosen: Recognizer(chosen.path, threads=settings.threads, card=chosen.card,
                                      limits=DecodeLimits(max_duration_s=settings.max_duration_s),
                                      uncertain_below=settings.uncertain_below, device=settings.device))
        log.info("model: %s", choice.describe())
        recognizer = loaded
        if settings.batching or (settings.batching is None and recognizer.device == "cuda"):
            recognizer.enable_batching(settings.batch_window_ms / 1000, settings.batch_max_frames)
    # Taught models start from the float model, whichever copy is served.
    teach_base = resolve_model(settings.teach_base or settings.model_path or recognizer.model_path)
    if settings.teach_base is not None and settings.data_dir is not None:  # teaching is off without a data dir
        check_teach_base(teach_base)
    service = PredictionService(recognizer, settings, decode)
    teaching = Teaching(service, settings.data_dir, teach_base)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        await teaching.resume()
        try:
            yield
        finally:
            await teaching.stop()
            await service.stop()

    # FastAPIOffline serves /docs and /redoc from files in its package: they work without internet.
    app = FastAPIOffline(title="Action recognition", version="1", lifespan=lifespan, static_url="/static/docs",
                         summary="Which human action does a video show, and how sure is the model.")
    app.state.service = service
    app.state.teaching = teaching
    app.include_router(router)
    app.include_router(teaching_router)
    app.include_router(live.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    _add_error_handlers(app, service)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization"],
                           expose_headers=["Retry-After"], max_age=600)
    app.add_middleware(OriginCheck, origins=settings.cors_origins, hosts=settings.allowed_hosts)
    app.add_middleware(HostCheck, hosts=settings.hosts)
    app.add_middleware(AnswerWhenCutShort)
    app.add_middleware(CloseWhenBodyUnread)
    app.add_middleware(RequestLogMiddleware, metrics=service.metrics)
    return app


def check_teach_base(path: Path) -> None:
    """A teaching base given apart from the served model loads now, or the server does not start:
    ModelFileError naming the setting and what is wrong with the file."""
    try:
        load_network(path, threads=1)
    except ModelFileError as exc:
        raise ModelFileError(f"--teach-base (ACTIONREC_TEACH_BASE): {exc}") from None


def _add_error_handlers(app: FastAPI, service: PredictionService) -> None:
    """Every failure becomes {"detail": "...", "reason": "..."} with its status; 503s say when to retry."""
    timeout_s = service.settings.decode_timeout_s
    # Each error carries its status and reason; what the server says instead of its own message:
    details: dict[type[Exception], str | None] = {
        VideoError: None,
        DecodeCrashed: "This video could not be decoded: the decoder failed on it. The file is probably damaged; "
                       "re-encode it (e.g. `ffmpeg -i in.mp4 out.mp4`) and try again.",
        DecodeFailed: "This video could not be decoded: reading it raised an error the server does not know. "
                      "Re-encode it (e.g. `ffmpeg -i in.mp4 out.mp4`) and try again; the error is in the server's "
                      "log.",
        DecodeTimedOut: f"This video could not be decoded within {timeout_s:g} s, so decoding was stopped. The file "
                        "may be damaged, or too long or too high-resolution for this server: try a shorter or "
                        "smaller video.",
        WorkerLost: "The server lost the process decoding this video (it was stopped, not by the video). Send it "
                    "again in a few seconds.",
        DecodersBusy: "The server is busy decoding other videos. Try again in a few seconds.",
        ServerBusy: None,
        InferenceFailed: None,
        RegionsError: None,
    }
    for kind, detail in details.items():
        app.add_exception_handler(kind, _handler(detail))

    async def request_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestError)
        return error_answer(exc.status, str(exc), exc.reason, exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return error_answer(422, "; ".join(problems), "invalid_parameters")

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = None if exc.headers is None else dict(exc.headers)
        return error_answer(exc.status_code, str(exc.detail), reason, headers)

    async def model_file_error(_request: Request, exc: Exception) -> JSONResponse:  # a model that did not load
        return error_answer(422, for_clients(str(exc)), "model_unusable")

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(ModelFileError, model_file_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _handler(detail: str | None):
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return error_answer(exc.status, detail or str(exc), exc.reason)  # type: ignore[attr-defined]

    return handle


def serve(settings: ServerSettings, *, decode: DecodeFunction = stream_prediction_frames) -> None:
    """Load the model, start the decode workers and serve until interrupted (`decode`: see create_app)."""
    configure_logging()
    app = create_app(settings, decode=decode)
    room = connection_limit(settings.max_uploads, settings.max_live, settings.workers)  # raises the limit too
    max_connections = settings.max_connections or room
    # Our middleware logs each request once; uvicorn's access log would repeat it. On SIGTERM
    # uvicorn stops accepting, lets the requests in progress finish (up to the drain timeout),
    # and only then does the app stop its decode workers.
    # loop="asyncio": the connection limit lives in the listening socket's accept(), which asyncio
    # calls and uvloop (used by "auto" where installed) does not.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, access_log=False, log_level="info",
                            http=guarded_protocol(settings.header_timeout_s), loop="asyncio", timeout_keep_alive=5,
                            backlog=ACCEPT_BACKLOG,
                            # uvicorn hands it to asyncio.timeout, which takes a float; only its annotation says int
                            timeout_graceful_shutdown=settings.drain_timeout_s)  # type: ignore[arg-type]
    # After uvicorn's logging setup; on the loggers that write request lines (a filter on a parent
    # logger does not see its children's records).
    for name in ("uvicorn.error", "uvicorn.access", "actionrec.server"):
        logging.getLogger(name).addFilter(SafeLogText())
    throttle = Throttle()
    for name in ("uvicorn.error", "asyncio"):
        logging.getLogger(name).addFilter(throttle)
    logging.getLogger("actionrec.server").info("at most %d connections at once (--max-connections)", max_connections)
    _Server(config, max_connections).run()


class _Server(uvicorn.Server):
    """uvicorn's server, listening on sockets that take at most `max_connections` connections; and
    after draining on SIGTERM or Ctrl-C the process exits normally: uvicorn raises the signal again,
    which skips the interpreter's exit handlers and leaves multiprocessing's temporary folder behind."""

    def __init__(self, config: uvicorn.Config, max_connections: int) -> None:
        super().__init__(config)
        self.max_connections = max_connections

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is not None:
            await super().startup(sockets)
            return
        try:
            sockets = list(listening_sockets(self.config.host, self.config.port, self.max_connections))
        except OSError as exc:
            self._cannot_listen(exc)
        try:
            await super().startup(sockets)
        except OSError as exc:  # listen() lost the port to a server that bound it at the same time
            await self.lifespan.shutdown()
            self._cannot_listen(exc)
        if self.started:
            self._log_started_message(sockets)

    def _cannot_listen(self, exc: OSError) -> NoReturn:
        logging.getLogger("uvicorn.error").error("cannot listen on %s port %d: %s",
                                                 self.config.host, self.config.port, exc)
        sys.exit(3)  # uvicorn's exit status when it cannot start

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
