"""The prediction service behind the routes: one model, decode workers, a bound on work in progress.

Decoding runs in worker processes (see `workers`); the frames they stream back are encoded and
classified as they arrive, on threads off the event loop, so health checks and other requests
stay responsive while videos are processed. Failures are raised as this package's errors; the
app turns them into HTTP answers in one place.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from fastapi import Request

from actionrec.errors import (
    ActionrecError,
    DecodeCrashed,
    DecodeFailed,
    DecodeTimedOut,
    InferenceFailed,
    ServerBusy,
    UndecodableVideoError,
    UploadError,
    VideoError,
    WorkerLost,
)
from actionrec.runtime.answer import Prediction
from actionrec.runtime.recognizer import Recognizer
from actionrec.runtime.regions import answer_region_stream, answer_regions, read_regions
from actionrec.runtime.resources import cpu_facts, describe_cpu
from actionrec.serve import uploads
from actionrec.serve.metrics import Metrics
from actionrec.serve.settings import ServerSettings, UploadLimits, megabytes
from actionrec.serve.workers import DecodeFunction, DecodePool
from actionrec.teaching.flow import MAX_CLIP_S
from actionrec.video import DecodeLimits, stream_prediction_frames
from actionrec.video.decode import FixedRegionCrops
from actionrec.video.regions import RegionSpec
from actionrec.video.stream import FramesDone

log = logging.getLogger("actionrec.server")

IDLE_RELEASE_S = 1.0
UPLOAD_NAME = "the uploaded video"  # how messages about an upload name it ("the uploaded video: lasts ...")
CLIP_LIMITS = DecodeLimits(max_duration_s=MAX_CLIP_S)  # example clips for teaching
T = TypeVar("T")


class PredictionService:
    def __init__(self, recognizer: Recognizer, settings: ServerSettings,
                 decode: DecodeFunction = stream_prediction_frames) -> None:
        self.recognizer = recognizer
        self.settings = settings
        self.decode = decode
        self.metrics = Metrics()
        self.pool = DecodePool(settings.workers, settings.decode_timeout_s)
        self.pending = 0  # predictions in progress
        self.uploads = 0  # uploads being received
        self.live_streams = 0
        self._release: asyncio.Task | None = None  # gives the model's working memory back once idle
        self.upload_dir = Path(tempfile.mkdtemp(prefix="actionrec-uploads-"))
        free = shutil.disk_usage(self.upload_dir).free
        self.budget = uploads.UploadBudget(min(int(settings.upload_budget_mb * 1024 * 1024), int(free * 0.9)))

    async def start(self) -> None:
        await self.pool.start()
        log.info("model %s %s loaded (%d actions); %d decode workers ready", self.recognizer.name,
                 self.recognizer.version, len(self.recognizer.labels), self.pool.running)
        log.info("settings: %s; uploads in progress up to %s in %s", self.settings.describe(),
                 megabytes(self.budget.limit), self.upload_dir)
        cpu = cpu_facts()
        precision = self.recognizer.card.precision
        log.info("CPU: %s; %s", describe_cpu(cpu), _int8_note(cpu["int8_pays"], precision))

    async def stop(self) -> None:
        if self._release is not None:
            self._release.cancel()
        await self.pool.close()
        shutil.rmtree(self.upload_dir, ignore_errors=True)

    @asynccontextmanager
    async def received_upload(self, request: Request, max_bytes: int, allow_multipart: bool) -> AsyncIterator[Path]:
        """The request's video in a temporary file, held against the upload budget until the block
        ends (then deleted). The body is read with one of `max_uploads` places, before any place for
        work is taken; refusals (UploadError, ServerBusy) are counted by reason."""
        settings = self.settings
        limits = UploadLimits(max_bytes, settings.upload_idle_timeout_s, settings.upload_min_kbps * 1024)
        with self.budget.hold() as held:
            try:
                uploads.check_headers(request, max_bytes, allow_multipart)
                async with self._upload_slot():
                    video = await uploads.save_video(request, limits, self.upload_dir, held)
            except (UploadError, ServerBusy) as exc:
                self.metrics.upload_refused(exc.reason)
                if isinstance(exc.__context__, OSError):  # a failed write: once, without a traceback
                    log.warning("an upload could not be written to %s (%s)", self.upload_dir, exc.__context__)
                raise
            try:
                yield video
            finally:
                video.unlink(missing_ok=True)

    @asynccontextmanager
    async def _upload_slot(self) -> AsyncIterator[None]:
        """Hold one of `max_uploads` places for receiving an upload; ServerBusy when none is free,
        or when every place for work is taken and as many uploads are already arriving to take
        them next (refused before the body is sent, not after)."""
        if self.uploads >= self.settings.max_uploads:
            raise ServerBusy(f"The server is receiving {self.settings.max_uploads} uploads already. Try again in a "
                             "few seconds.")
        if self.pending >= self.settings.max_pending and self.uploads >= self.settings.max_pending:
            # Answered before the body is read: the connection is closed, not kept for another request.
            raise UploadError(503, f"The server is busy with {self.settings.max_pending} videos, and as many uploads "
                                   "are waiting for their turn. Try again in a few seconds.", "busy",
                              {"Connection": "close"})
        self.uploads += 1
        try:
            yield
        finally:
            self.uploads -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of `max_pending` places for a prediction; ServerBusy when none is free."""
        if self.pending >= self.settings.max_pending:
            raise ServerBusy(f"The server is busy with {self.settings.max_pending} videos. Try again in a few seconds.")
        self.pending += 1
        self.metrics.set_in_progress(self.pending)
        try:
            yield
        finally:
            self.pending -= 1
            self.metrics.set_in_progress(self.pending)
            if self.pending == 0 and (self._release is None or self._release.done()):
                self._release = asyncio.get_running_loop().create_task(self._release_when_idle())

    async def _release_when_idle(self) -> None:
        """Once no request has come for a second, give the model's working memory back."""
        try:
            await asyncio.sleep(IDLE_RELEASE_S)
            if self.pending == 0:
                await asyncio.to_thread(self.recognizer.release_memory)
        except Exception:  # a missed release costs memory, not answers
            log.exception("could not give back the model's working memory")

    async def predict(self, video: Path, *, top_k: int, segments: bool,
                      regions: RegionSpec | None = None, explain: bool = False) -> tuple[Prediction, Recognizer]:
        """Predict from an uploaded video file (which stays for the caller to delete); with the
        prediction, the recognizer that made it (the served model may be switched meanwhile). With
        `regions`, the worker decodes, crops (and finds people) and this process answers each region."""
        recognizer = self.recognizer
        job: tuple = (self.decode, (str(video), recognizer.spec, recognizer.limits,
                                    recognizer.timeline if segments else None), {"name": UPLOAD_NAME})
        if regions is not None and segments:  # a timeline per cell or zone, from the frames and crops streamed
            job = (stream_prediction_frames, (str(video), recognizer.spec, recognizer.limits, recognizer.timeline),
                   {"name": UPLOAD_NAME, "convert": FixedRegionCrops(regions, recognizer.spec.image_size)})
        elif regions is not None:
            job = (read_regions, (str(video), recognizer.spec, recognizer.limits, regions), {"name": UPLOAD_NAME})

        def consume(messages: Iterator) -> Prediction:
            try:
                if regions is not None and segments:
                    return answer_region_stream(recognizer, messages, regions, top_k)
                if regions is not None:
                    return answer_regions(recognizer, next(iter(messages)), regions, top_k,
                                          max_tracks=self.settings.max_regions)
                return recognizer.predict_stream(messages, top_k=top_k, explain=explain)
            except ActionrecError:
                raise
            except Exception as exc:  # the model failed, not the upload: a server error, logged in full
                log.exception("inference failed")
                raise InferenceFailed("The model failed on this video; the error is in the server's log. "
                                      "Please report it.") from exc

        prediction = await self._decoded(job, consume)
        self.metrics.stage("decode", prediction.timings_ms["decode"] / 1000)
        self.metrics.stage("inference", prediction.timings_ms["inference"] / 1000)
        return prediction, recognizer


    async def _decoded(self, job: tuple, consume: Callable[[Iterator], T]) -> T:
        """`consume` of `job`'s decoded frames, from a worker; failures counted, logged and raised."""
        try:
            return await self.pool.run(job, consume)
        except (VideoError, DecodeCrashed, DecodeFailed, WorkerLost, DecodeTimedOut) as exc:
            self.metrics.decode_failure(exc.reason)
            if isinstance(exc, DecodeCrashed):
                log.warning("a decode worker failed on an upload (%s); replacing it", exc)
            elif isinstance(exc, DecodeFailed):
                log.error("decoding an upload raised an unexpected error (%s); the worker goes on", exc)
            elif isinstance(exc, WorkerLost):
                log.warning("%s; replacing it", exc)
            elif isinstance(exc, DecodeTimedOut):
                log.warning("decoding an upload took over %.0f s; its worker was stopped", self.pool.timeout_s)
            raise

    async def check_clip(self, video: Path) -> float:
        """An example clip for teaching decodes whole as a prediction reads it: its duration in
        seconds (VideoError, DecodeCrashed, ... as for predictions when it does not)."""
        job = (self.decode, (str(video), self.recognizer.spec, CLIP_LIMITS, None), {"name": "the example clip"})
        return await self._decoded(job, clip_duration)

    async def switch_model(self, path: Path) -> None:
        """Serve the model at `path` from now on. It loads beside the current one; requests in
        progress finish on the model they started with (each holds its own reference, and hands
        its own frames and size to the decode workers). ModelFileError if it cannot load."""
        current = self.recognizer
        new = await asyncio.to_thread(Recognizer, path, threads=self.settings.threads, limits=current.limits,
                                      uncertain_below=self.settings.uncertain_below, device=self.settings.device)
        if current.batcher is not None:
            new.enable_batching(current.batcher.window_s, current.batcher.max_frames)
        self.recognizer = new
        log.info("now serving %s %s (%d actions) from %s", new.name, new.version, len(new.labels), path)


def clip_duration(messages: Iterator) -> float:
    """What checking an example clip needs of its decoded frames: that they all came, and how long it is."""
    for message in messages:
        if isinstance(message, FramesDone):
            return message.info.duration_s
    raise UndecodableVideoError("the clip's frames stopped before the end of the reading")


def _int8_note(int8_pays: bool, precision: str) -> str:
    if int8_pays:
        return "int8 models run fast here (VNNI or AMX)" + ("" if precision == "int8" else "; this model is fp32 "
                                                           "(an int8 copy beside it, as export keeps, would be run)")
    return "no VNNI or AMX: int8 models may be slower than fp32 here" + (" (this model is int8)" if precision == "int8"
                                                                          else "")
