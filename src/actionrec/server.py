"""The REST API and the web page: upload a video, get the action it shows.

Routes (see `create_app`):

    GET  /                  the web page (static files from actionrec/web)
    POST /, POST /predict   raw video bytes in, {"action", "confidence", "message"} out
    POST /v1/predictions    raw bytes or a multipart `file`; top-k, segments, video facts, timings
    GET  /v1/model          the loaded model's labels, dataset and input spec
    GET  /healthz           the process is alive
    GET  /readyz            the model is loaded and a decode worker is running
    GET  /metrics           Prometheus text exposition
    GET  /docs              FastAPI's interactive API docs

Uploads are untrusted. Each is decoded in a separate worker process (FFmpeg can crash outright on
some damaged streams), with a time limit, and then classified on a thread, so a bad file costs
one worker process and a 422, never the server. At most `max_pending` prediction requests are
in progress at once; more get 503 with Retry-After.

With an API key configured, the prediction routes and /metrics need it (`X-API-Key: KEY` or
`Authorization: Bearer KEY`). The page, /healthz, /readyz and /v1/model stay open so that the
page can describe the model and orchestrators can probe the service. /metrics is guarded because
it reveals traffic volumes; Prometheus can send the key as a bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from actionrec.errors import VideoError
from actionrec.recognizer import Decoded, Prediction, Recognizer, decode_video
from actionrec.video import ClipSpec, DecodeLimits

log = logging.getLogger("actionrec.server")

WEB_DIR = Path(__file__).parent / "web"
RETRY_AFTER_S = 2
WORKER_START_TIMEOUT_S = 120.0
WORKER_RESTART_ALLOWANCE_S = 30.0
ACCEPTED_TYPES_TEXT = "video/* or application/octet-stream"

DecodeFunction = Callable[..., Decoded]  # decode_video's signature: (source, spec, limits, *, segments)


@dataclass
class ServerSettings:
    """Deployment settings; the `serve` command fills them from flags and ACTIONREC_* variables."""

    max_upload_bytes: int = 100 * 1024 * 1024
    max_duration_s: float = 600.0
    decode_timeout_s: float = 60.0
    workers: int = 2  # decoding processes; inference runs on as many threads
    threads: int | None = None  # ONNX Runtime threads per inference (None: its default)
    max_pending: int = 8  # prediction requests in progress before 503
    uncertain_below: float = 0.5
    cors_origins: list[str] = field(default_factory=list)
    api_key: str | None = None

    def __post_init__(self) -> None:
        problems = [
            (self.max_upload_bytes < 1, "the upload limit (--max-upload-mb) must be positive"),
            (self.max_duration_s <= 0, "the duration limit (--max-duration-s) must be positive"),
            (self.decode_timeout_s <= 0, "the decode timeout (--decode-timeout-s) must be positive"),
            (self.workers < 1, "--workers must be at least 1"),
            (self.threads is not None and self.threads < 1, "--threads must be at least 1"),
            (self.max_pending < 1, "--max-pending must be at least 1"),
            (not 0 <= self.uncertain_below <= 1, "--uncertain-below must be between 0 and 1"),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(message)

    def describe(self) -> str:
        """One line for the start-up log; never shows the API key itself."""
        return (f"upload limit {_megabytes(self.max_upload_bytes)}, duration limit {self.max_duration_s:g} s, "
                f"decode timeout {self.decode_timeout_s:g} s, {self.workers} decode workers, "
                f"{self.max_pending} requests at once, API key {'required' if self.api_key else 'not required'}, "
                f"CORS origins: {', '.join(self.cors_origins) or 'none'}")


# --------------------------------------------------------------------------- decode workers


class DecodeCrashed(Exception):
    """The worker process died while decoding (e.g. FFmpeg segfaulted on a damaged stream)."""


class DecodeTimedOut(Exception):
    """The worker took longer than the per-upload time limit."""


class DecodersBusy(Exception):
    """No decode worker became free in time."""


def _decode_worker_main(conn: Connection, decode: DecodeFunction) -> None:
    """Body of a worker process: decode jobs from `conn` until told to stop or the parent goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server stops us
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        source, spec, limits, options = job
        try:
            reply: tuple[str, Any] = ("ok", decode(source, spec, limits, **options))
        except VideoError as exc:
            reply = ("video_error", exc)
        except Exception as exc:  # an upload must never take the worker loop down
            reply = ("error", f"{type(exc).__name__}: {exc}")
        del source, job
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. a result that cannot be pickled
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class DecodeProcess:
    """One worker process and its pipe. Blocking methods: call them from a thread."""

    def __init__(self, decode: DecodeFunction, context: multiprocessing.context.BaseContext) -> None:
        self.conn, child_end = context.Pipe()
        self.process = context.Process(
            target=_decode_worker_main, args=(child_end, decode), name="actionrec-decode", daemon=True
        )
        self.process.start()
        child_end.close()  # so that the parent's death reads as EOF in the child

    def wait_ready(self, timeout: float) -> bool:
        try:
            return self.conn.poll(timeout) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            return False

    def run(self, job: tuple, timeout: float) -> Decoded:
        try:
            self.conn.send(job)
            if not self.conn.poll(timeout):
                raise DecodeTimedOut()
            kind, payload = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(1)
            raise DecodeCrashed(f"exit code {self.process.exitcode}") from None
        if kind == "ok":
            return payload
        if kind == "video_error":
            raise payload
        raise DecodeCrashed(payload)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def stop(self, timeout: float = 2.0) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout)
        self.kill()
        self.conn.close()


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers fork from a clean, single-threaded server process that has this module loaded, so
    a replacement starts in milliseconds; plain fork is unsafe here (the server runs threads)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class DecodePool:
    """A fixed number of decode worker processes; one that crashes or hangs is killed and replaced.

    A dedicated process per worker (not a shared ProcessPoolExecutor) so that killing a stuck
    decode does not disturb the uploads other workers are decoding.
    """

    def __init__(self, decode: DecodeFunction, size: int, timeout_s: float) -> None:
        self.decode_function = decode
        self.size = size
        self.timeout_s = timeout_s
        self._context = _worker_context()
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="decode-wait")
        self._idle: asyncio.Queue[DecodeProcess] = asyncio.Queue()
        self._all: set[DecodeProcess] = set()
        self._replacements: set[asyncio.Task] = set()
        self._closed = False

    @property
    def running(self) -> int:
        return len(self._all)

    def _start_one(self) -> DecodeProcess | None:
        worker = DecodeProcess(self.decode_function, self._context)
        if worker.wait_ready(WORKER_START_TIMEOUT_S):
            return worker
        worker.kill()
        return None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        started = await asyncio.gather(*(loop.run_in_executor(self._threads, self._start_one)
                                          for _ in range(self.size)))
        for worker in started:
            if worker is not None:
                self._add(worker)
        if not self._all:
            raise RuntimeError("no decode worker process could be started")

    def _add(self, worker: DecodeProcess) -> None:
        self._all.add(worker)
        self._idle.put_nowait(worker)

    async def decode(self, source: bytes, spec: ClipSpec, limits: DecodeLimits, **options: Any) -> Decoded:
        """Decode in a worker. Raises VideoError, DecodeCrashed, DecodeTimedOut or DecodersBusy."""
        worker = await self._idle_worker()
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._threads, worker.run, (source, spec, limits, options), self.timeout_s
            )
        except (DecodeCrashed, DecodeTimedOut):
            self._replace(worker)
            raise
        except asyncio.CancelledError:
            self._replace(worker)  # its decode was abandoned half way; a fresh worker is simpler
            raise
        except BaseException:
            self._idle.put_nowait(worker)
            raise
        self._idle.put_nowait(worker)
        return result

    async def _idle_worker(self) -> DecodeProcess:
        # A busy worker is free within timeout_s (it is killed then); a replacement takes seconds.
        deadline = time.monotonic() + self.timeout_s + WORKER_RESTART_ALLOWANCE_S
        while True:
            try:
                worker = await asyncio.wait_for(self._idle.get(), timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise DecodersBusy() from None
            if worker.process.is_alive():
                return worker
            log.warning("a decode worker died while idle (exit code %s); replacing it", worker.process.exitcode)
            self._replace(worker)

    def _replace(self, worker: DecodeProcess) -> None:
        """Take `worker` out of service now; kill it and start another in the background."""
        self._all.discard(worker)
        task = asyncio.create_task(self._kill_and_replace(worker))
        self._replacements.add(task)
        task.add_done_callback(self._replacements.discard)

    async def _kill_and_replace(self, worker: DecodeProcess) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(worker.kill)
        delay = 0.5
        while not self._closed:
            replacement = await loop.run_in_executor(self._threads, self._start_one)
            if replacement is not None:
                if self._closed:
                    await asyncio.to_thread(replacement.stop)
                else:
                    self._add(replacement)
                return
            log.error("a decode worker failed to start; retrying in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._replacements):
            task.cancel()
        workers = list(self._all)
        self._all.clear()
        await asyncio.gather(*(asyncio.to_thread(worker.stop) for worker in workers))
        self._threads.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- metrics

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """Request counts by route and status, latency histograms, predictions in progress, decode
    failures by reason, in Prometheus' text format."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # one per app, so tests can build several apps
        self.requests = Counter("actionrec_http_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("actionrec_http_request_duration_seconds", "Time to answer a request.",
                                 ["route"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.stages = Histogram("actionrec_prediction_stage_duration_seconds",
                                "Time spent decoding and classifying an upload.",
                                ["stage"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.failures = Counter("actionrec_decode_failures", "Uploads that could not be decoded, by reason.",
                                ["reason"], registry=self.registry)
        self.in_progress = Gauge("actionrec_predictions_in_progress", "Prediction requests being handled.",
                                 registry=self.registry)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def stage(self, stage: str, seconds: float) -> None:
        self.stages.labels(stage).observe(seconds)

    def decode_failure(self, reason: str) -> None:
        self.failures.labels(reason).inc()

    def set_in_progress(self, count: int) -> None:
        self.in_progress.set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestLogMiddleware:
    """One log line and one metrics sample per request: method, path, status, milliseconds.

    Never logs bodies or query strings. Routes are recorded by their template (unknown paths as
    "unmatched") so that metrics keep a bounded number of series.
    """

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request(scope["method"], route, status, seconds)
            log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, seconds * 1000)


# --------------------------------------------------------------------------- API schema


class Answer(BaseModel):
    """The original contract: exactly these three keys."""

    action: str
    confidence: float
    message: str


class ScoredAction(BaseModel):
    action: str
    confidence: float


class TimelineSegment(BaseModel):
    start_s: float
    end_s: float
    action: str
    confidence: float


class ModelRef(BaseModel):
    name: str
    version: str


class DetailedAnswer(Answer):
    top_k: list[ScoredAction]
    segments: list[TimelineSegment] | None
    video: dict[str, Any]
    timings_ms: dict[str, float]
    model: ModelRef
    uncertain: bool
    warnings: list[str]


def _raw_body_openapi(multipart: bool = False) -> dict:
    binary = {"schema": {"type": "string", "format": "binary"}}
    content: dict[str, Any] = {"video/mp4": binary, "video/*": binary, "application/octet-stream": binary}
    if multipart:
        content["multipart/form-data"] = {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                       "required": ["file"]}
        }
    return {"requestBody": {"required": True, "description": "The video file's bytes.", "content": content}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/json": {"example": {"detail": "..."}}}}
    for status, text in (
        (400, "Empty body, or a multipart request without a `file` field"),
        (401, "An API key is required and was missing or wrong"),
        (413, "The upload is larger than the server's limit"),
        (415, "Not a video content type"),
        (422, "Not a video that can be decoded (damaged, truncated, too long, too large)"),
        (503, "The server is busy: retry after the Retry-After header's seconds"),
    )
}


# --------------------------------------------------------------------------- the app


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


class PendingLimit:
    """Counts prediction requests in progress; refuses one past the limit instead of queueing it."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.count = 0
        self._metrics = metrics

    def try_acquire(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        self._metrics.set_in_progress(self.count)
        return True

    def release(self) -> None:
        self.count -= 1
        self._metrics.set_in_progress(self.count)


def create_app(
    model_path: str | os.PathLike,
    settings: ServerSettings | None = None,
    *,
    decode: DecodeFunction = decode_video,
) -> FastAPI:
    """Build the app. The model loads now (ModelFileError if it cannot); workers start with the app.

    `decode` runs in the worker processes and must be a module-level function with
    `decode_video`'s signature; tests pass one that crashes or stalls on purpose.
    """
    settings = settings or ServerSettings()
    recognizer = Recognizer(
        model_path,
        threads=settings.threads,
        limits=DecodeLimits(max_duration_s=settings.max_duration_s),
        uncertain_below=settings.uncertain_below,
    )
    metrics = Metrics()
    pending = PendingLimit(settings.max_pending, metrics)
    pool = DecodePool(decode, settings.workers, settings.decode_timeout_s)
    inference_threads = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="inference")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await pool.start()
        log.info("model %s %s loaded (%d actions); %d decode workers ready",
                 recognizer.name, recognizer.version, len(recognizer.labels), pool.running)
        log.info("settings: %s", settings.describe())
        try:
            yield
        finally:
            await pool.close()
            inference_threads.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="Action recognition",
        version="1",
        summary="Which human action does a video show, and how sure is the model.",
        lifespan=lifespan,
    )
    app.state.recognizer = recognizer
    app.state.pool = pool
    app.state.settings = settings

    # ---- security

    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The server's API key.")
    bearer = HTTPBearer(auto_error=False, description="The server's API key as a bearer token.")
    expected_key = settings.api_key.encode() if settings.api_key else None

    async def require_api_key(
        header_key: str | None = Depends(api_key_header),
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> None:
        if expected_key is None:
            return
        given = header_key or (credentials.credentials if credentials else None)
        if given is None:
            raise HTTPException(401, "This server needs an API key: send it in the X-API-Key header "
                                     "or as 'Authorization: Bearer KEY'.",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), expected_key):
            raise HTTPException(401, "The API key is wrong. Check it and try again.",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(require_api_key)]

    # ---- errors keep {"detail": "..."} with one readable string

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    # ---- predictions

    async def read_body(request: Request) -> bytes:
        """The body, read in chunks and abandoned as soon as it passes the size limit."""
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > settings.max_upload_bytes:
                    raise upload_too_large()
        except ClientDisconnect:
            raise HTTPException(400, "The upload was interrupted before it finished.") from None
        return bytes(body)

    def upload_too_large() -> HTTPException:
        return HTTPException(413, f"The upload is larger than this server's limit of "
                                  f"{_megabytes(settings.max_upload_bytes)}. Send a shorter or more "
                                  "compressed video.")

    def check_declared_length(request: Request) -> None:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_upload_bytes:
            raise upload_too_large()

    def check_content_type(request: Request, allow_multipart: bool) -> None:
        kind = _content_type(request)
        if not (kind in ("", "application/octet-stream") or kind.startswith("video/")
                or (allow_multipart and kind == "multipart/form-data")):
            accepted = ACCEPTED_TYPES_TEXT + (" or multipart/form-data" if allow_multipart else "")
            raise HTTPException(415, f"Content-Type {kind!r} is not a video. Send the file's bytes as "
                                     f"{accepted} (with curl: -H 'Content-Type: video/mp4').")

    async def upload_from(request: Request) -> bytes:
        body = await read_body(request)
        if _content_type(request) == "multipart/form-data":
            body = await _multipart_file(request, body)
        if not body:
            raise HTTPException(400, "The upload is empty (0 bytes). Send the video file's contents as "
                                     "the request body.")
        return body

    async def predict(request: Request, *, top_k: int, segments: bool,
                      allow_multipart: bool = False) -> tuple[Prediction, float]:
        """Run one upload through decode and inference; every failure becomes an HTTPException."""
        started = time.perf_counter()
        check_content_type(request, allow_multipart)
        check_declared_length(request)
        if not pending.try_acquire():
            raise HTTPException(503, f"The server is busy with {pending.limit} videos. Try again in a "
                                     "few seconds.", headers={"Retry-After": str(RETRY_AFTER_S)})
        try:
            body = await upload_from(request)
            decoded = await decode_upload(body, segments)
            metrics.stage("decode", decoded.decode_ms / 1000)
            inference_started = time.perf_counter()
            try:
                prediction = await asyncio.get_running_loop().run_in_executor(
                    inference_threads, lambda: recognizer.predict_decoded(decoded, top_k=top_k))
            except Exception:  # the model failed, not the upload: a server error, logged in full
                log.exception("inference failed")
                raise HTTPException(500, "The model failed on this video; the error is in the server's "
                                         "log. Please report it.") from None
            metrics.stage("inference", time.perf_counter() - inference_started)
            return prediction, (time.perf_counter() - started) * 1000
        finally:
            pending.release()

    async def decode_upload(body: bytes, segments: bool) -> Decoded:
        try:
            return await pool.decode(body, recognizer.spec, recognizer.limits, segments=segments)
        except VideoError as exc:
            metrics.decode_failure(exc.reason)
            raise HTTPException(422, str(exc)) from None
        except DecodeCrashed as exc:
            metrics.decode_failure("crashed")
            log.warning("a decode worker failed on an upload (%s); replacing it", exc)
            raise HTTPException(422, "This video could not be decoded: the decoder failed on it. The file "
                                     "is probably damaged; re-encode it (e.g. `ffmpeg -i in.mp4 out.mp4`) "
                                     "and try again.") from None
        except DecodeTimedOut:
            metrics.decode_failure("timeout")
            log.warning("decoding an upload took over %.0f s; its worker was stopped", pool.timeout_s)
            raise HTTPException(422, f"This video could not be decoded within {pool.timeout_s:g} s, so "
                                     "decoding was stopped. The file may be damaged, or too long or too "
                                     "high-resolution for this server: try a shorter or smaller video.") from None
        except DecodersBusy:
            raise HTTPException(503, "The server is busy decoding other videos. Try again in a few seconds.",
                                headers={"Retry-After": str(RETRY_AFTER_S)}) from None

    answer_doc = dict(response_model=Answer, dependencies=guarded, responses=ERROR_RESPONSES,
                      openapi_extra=_raw_body_openapi(), tags=["predictions"])

    @app.post("/", summary="Which action a video shows (raw bytes in)", **answer_doc)
    async def predict_root(request: Request) -> Answer:
        prediction, _ = await predict(request, top_k=1, segments=False)
        return Answer(action=prediction.action, confidence=prediction.confidence, message="Success")

    @app.post("/predict", summary="Same as POST /", **answer_doc)
    async def predict_alias(request: Request) -> Answer:
        return await predict_root(request)

    @app.post("/v1/predictions", summary="Action, top-k, timeline, video facts and timings",
              response_model=DetailedAnswer, dependencies=guarded, responses=ERROR_RESPONSES,
              openapi_extra=_raw_body_openapi(multipart=True), tags=["predictions"])
    async def predict_v1(
        request: Request,
        top_k: int = Query(5, ge=1, le=1000, description="How many of the best actions to list."),
        segments: bool = Query(False, description="Also classify sliding windows: a timeline of actions."),
    ) -> DetailedAnswer:
        prediction, total_ms = await predict(request, top_k=top_k, segments=segments, allow_multipart=True)
        warnings = list(prediction.warnings)
        if prediction.uncertain:
            warnings.append(
                f"The model is unsure: its best guess has {prediction.confidence:.0%} confidence, under "
                f"{recognizer.uncertain_below:.0%}. The video may show none of the "
                f"{len(recognizer.labels)} actions this model knows.")
        return DetailedAnswer(
            action=prediction.action,
            confidence=prediction.confidence,
            message="Success",
            top_k=[ScoredAction(**item) for item in prediction.top_k],
            segments=[TimelineSegment(**vars(s)) for s in prediction.segments] if prediction.segments else None,
            video=prediction.video,
            timings_ms=prediction.timings_ms | {"total": round(total_ms, 1)},
            model=ModelRef(name=recognizer.name, version=recognizer.version),
            uncertain=prediction.uncertain,
            warnings=warnings,
        )

    # ---- facts about the service

    @app.get("/v1/model", tags=["service"], summary="The loaded model: labels, dataset, input spec")
    async def model_facts() -> dict:
        return recognizer.describe() | {"api_key_required": expected_key is not None}

    @app.get("/healthz", tags=["service"], summary="The process is alive")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], summary="Model loaded and decode workers running",
             responses={503: {"description": "No decode worker is running"}})
    async def readyz() -> JSONResponse:
        workers = {"running": pool.running, "configured": pool.size}
        if pool.running == 0:
            return JSONResponse({"status": "not ready", "detail": "No decode worker is running; replacements "
                                 "are starting.", "workers": workers}, status_code=503)
        return JSONResponse({"status": "ready", "model": {"name": recognizer.name, "version": recognizer.version},
                             "workers": workers, "pending": pending.count})

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics", dependencies=guarded)
    async def metrics_text() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    # ---- the web page

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    app.add_middleware(RequestLogMiddleware, metrics=metrics)
    return app


PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


async def _multipart_file(request: Request, body: bytes) -> bytes:
    """The `file` field of a multipart body that was already read (within the size limit)."""

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    form_request = Request(request.scope, replay)
    try:
        form = await form_request.form(max_files=1, max_fields=10)
    except HTTPException as exc:
        raise HTTPException(400, f"The multipart body could not be read: {exc.detail}") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "The multipart body has no `file` field. Send the video as a file "
                                     "field named `file`, or send its raw bytes as the body.")
        return await upload.read()
    finally:
        await form.close()


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("actionrec").setLevel(logging.INFO)


def serve(
    model_path: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServerSettings | None = None,
) -> None:
    """Load the model, start the decode workers and serve until interrupted."""
    import uvicorn

    _configure_logging()
    app = create_app(model_path, settings)
    # Our middleware logs each request once; uvicorn's access log would repeat it.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info", timeout_graceful_shutdown=10)
