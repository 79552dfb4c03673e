"""The prediction service behind the routes: one model, decode workers, a bound on work in progress.

Decoding runs in worker processes (see `workers`), inference on threads off the event loop, so
health checks and other requests stay responsive while videos are processed. Failures are
raised as this package's errors; the app turns them into HTTP answers in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from actionrec.errors import DecodeCrashed, DecodeTimedOut, InferenceFailed, ServerBusy, VideoError
from actionrec.inference import Decoded, Prediction, Recognizer, decode_video
from actionrec.serve.metrics import Metrics
from actionrec.serve.settings import ServerSettings
from actionrec.serve.workers import DecodeFunction, DecodePool

log = logging.getLogger("actionrec.server")


class PredictionService:
    def __init__(self, recognizer: Recognizer, settings: ServerSettings, decode: DecodeFunction = decode_video) -> None:
        self.recognizer = recognizer
        self.settings = settings
        self.metrics = Metrics()
        self.pool = DecodePool(decode, settings.workers, settings.decode_timeout_s)
        self.pending = 0
        self._inference = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="inference")

    async def start(self) -> None:
        await self.pool.start()
        log.info("model %s %s loaded (%d actions); %d decode workers ready", self.recognizer.name,
                 self.recognizer.version, len(self.recognizer.labels), self.pool.running)
        log.info("settings: %s", self.settings.describe())

    async def stop(self) -> None:
        await self.pool.close()
        self._inference.shutdown(wait=False, cancel_futures=True)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of `max_pending` places for a prediction request; ServerBusy when none is free."""
        if self.pending >= self.settings.max_pending:
            raise ServerBusy(f"The server is busy with {self.settings.max_pending} videos. Try again in a few seconds.")
        self.pending += 1
        self.metrics.set_in_progress(self.pending)
        try:
            yield
        finally:
            self.pending -= 1
            self.metrics.set_in_progress(self.pending)

    async def predict(self, body: bytes, *, top_k: int, segments: bool) -> Prediction:
        decoded = await self._decode(body, segments)
        self.metrics.stage("decode", decoded.decode_ms / 1000)
        started = time.perf_counter()
        try:
            prediction = await asyncio.get_running_loop().run_in_executor(
                self._inference, lambda: self.recognizer.predict_decoded(decoded, top_k=top_k))
        except Exception as exc:  # the model failed, not the upload: a server error, logged in full
            log.exception("inference failed")
            raise InferenceFailed("The model failed on this video; the error is in the server's log. "
                                  "Please report it.") from exc
        self.metrics.stage("inference", time.perf_counter() - started)
        return prediction

    async def _decode(self, body: bytes, segments: bool) -> Decoded:
        try:
            return await self.pool.decode(body, self.recognizer.spec, self.recognizer.limits, segments=segments)
        except VideoError as exc:
            self.metrics.decode_failure(exc.reason)
            raise
        except DecodeCrashed as exc:
            self.metrics.decode_failure("crashed")
            log.warning("a decode worker failed on an upload (%s); replacing it", exc)
            raise
        except DecodeTimedOut:
            self.metrics.decode_failure("timeout")
            log.warning("decoding an upload took over %.0f s; its worker was stopped", self.pool.timeout_s)
            raise
