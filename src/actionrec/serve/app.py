"""The app: wires settings, the model and the prediction service to the routes, and maps every
failure to its HTTP answer in one place. `serve` runs it with uvicorn.

Uploads are untrusted. Each is decoded in a separate worker process, with a time limit, and then
classified on a thread, so a bad file costs one worker process and a 422, never the server. At
most `max_pending` prediction requests are in progress at once; more get 503 with Retry-After.
Errors are always `{"detail": "..."}` with one readable string.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from actionrec.errors import (
    DecodeCrashed,
    DecodersBusy,
    DecodeTimedOut,
    InferenceFailed,
    ModelFileError,
    ServerBusy,
    UploadError,
    VideoError,
)
from actionrec.inference import Recognizer
from actionrec.serve import live
from actionrec.serve.metrics import RequestLogMiddleware
from actionrec.serve.routes import WEB_DIR, router
from actionrec.serve.service import PredictionService
from actionrec.serve.settings import ServerSettings
from actionrec.serve.workers import DecodeFunction
from actionrec.video import DecodeLimits, stream_prediction_frames

RETRY_AFTER_S = 2


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
        recognizer = Recognizer(settings.model_path, threads=settings.threads,
                                limits=DecodeLimits(max_duration_s=settings.max_duration_s),
                                uncertain_below=settings.uncertain_below)
    service = PredictionService(recognizer, settings, decode)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="Action recognition", version="1", lifespan=lifespan,
                  summary="Which human action does a video show, and how sure is the model.")
    app.state.service = service
    app.include_router(router)
    app.include_router(live.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    _add_error_handlers(app, service)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization"],
                           expose_headers=["Retry-After"], max_age=600)
    app.add_middleware(RequestLogMiddleware, metrics=service.metrics)
    return app


def _add_error_handlers(app: FastAPI, service: PredictionService) -> None:
    """Every failure becomes {"detail": "..."} with its status; 503s say when to retry."""
    timeout_s = service.settings.decode_timeout_s
    answers: list[tuple[type[Exception], int, str | None]] = [  # None: the error's own message
        (VideoError, 422, None),
        (DecodeCrashed, 422, "This video could not be decoded: the decoder failed on it. The file is probably "
                             "damaged; re-encode it (e.g. `ffmpeg -i in.mp4 out.mp4`) and try again."),
        (DecodeTimedOut, 422, f"This video could not be decoded within {timeout_s:g} s, so decoding was stopped. "
                              "The file may be damaged, or too long or too high-resolution for this server: try "
                              "a shorter or smaller video."),
        (DecodersBusy, 503, "The server is busy decoding other videos. Try again in a few seconds."),
        (ServerBusy, 503, None),
        (InferenceFailed, 500, None),
    ]
    for kind, status, detail in answers:
        app.add_exception_handler(kind, _handler(status, detail))

    async def upload_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, UploadError)
        return await _handler(exc.status, None)(request, exc)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    app.add_exception_handler(UploadError, upload_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _handler(status: int, detail: str | None):
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return JSONResponse({"detail": detail or str(exc)}, status_code=status, headers=headers)

    return handle


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("actionrec").setLevel(logging.INFO)


def serve(settings: ServerSettings) -> None:
    """Load the model, start the decode workers and serve until interrupted."""
    import uvicorn

    configure_logging()
    app = create_app(settings)
    # Our middleware logs each request once; uvicorn's access log would repeat it.
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_level="info",
                timeout_graceful_shutdown=10)
