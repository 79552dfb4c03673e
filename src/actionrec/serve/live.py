"""Live recognition over a WebSocket: `ws://HOST/v1/live`, camera frames in, rolling answers out.

The protocol (JSON text messages from the server, binary frames from the client):

1. The client connects, with the API key (when the server has one) as an `X-API-Key` or
   `Authorization: Bearer` header, or as `?api_key=KEY` (browsers cannot set headers here);
   `?top_k=N` sets how many actions each answer lists (default 3).
2. The server sends `{"type": "ready", "sample_interval_s", "window_s", "image_size", "labels"}`.
3. The client sends camera frames as binary messages, each one JPEG or PNG image, about every
   `sample_interval_s`. Each frame gets one reply, so sending the next frame after the reply
   to the last one (and not before `sample_interval_s` has passed) keeps the lag lowest.
4. A frame that comes before the next sample is due gets `{"type": "skipped"}`. For a frame
   taken, the server answers `{"type": "warming_up", "frames", "needed"}` until a whole window
   has been seen, then `{"type": "prediction", "action", "confidence", "top_k", "uncertain",
   "time_s", "lag_s"}` (`time_s`: seconds since the stream started).
5. Anything wrong ends the stream with `{"type": "error", "detail", "reason"}` and a close code:
   1008 (API key, or a `top_k` that is not a number from 1 to 1000), 1003 (a frame that is not an
   image), 1009 (a frame over the size limit), 1013 (too many live streams: try again later), 4408
   (no frame for `live_idle_timeout_s`: text messages do not count). A browser page on another
   origin than the server's own or one of `--cors-origins` is refused before any of this (close
   code 1008, `origin_not_allowed`).

Frames are decoded in the server's decode workers, like uploads: a hostile image costs a worker.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from actionrec.errors import DecodeCrashed, DecodeFailed, DecodersBusy, DecodeTimedOut, VideoError, WorkerLost
from actionrec.runtime.watching import LiveRecognizer
from actionrec.serve.deps import key_problem
from actionrec.serve.service import PredictionService
from actionrec.serve.workers import Job
from actionrec.video.decode import read_image

MAX_FRAME_BYTES = 4 * 1024 * 1024
LIVE_WORKER_WAIT_S = 0.25

router = APIRouter()


def _given_key(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("x-api-key")
    bearer = websocket.headers.get("authorization", "")
    if header:
        return header
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    return websocket.query_params.get("api_key")


async def _end(websocket: WebSocket, code: int, detail: str, reason: str) -> None:
    await websocket.send_json({"type": "error", "detail": detail, "reason": reason})
    await websocket.close(code=code, reason=reason)


@router.websocket("/v1/live")
async def live(websocket: WebSocket) -> None:
    service: PredictionService = websocket.app.state.service
    settings = service.settings
    await websocket.accept()
    refused = key_problem(_given_key(websocket), settings.api_key_bytes)
    if refused is not None:
        await _end(websocket, 1008, f"{refused} (A browser passes it as ?api_key=KEY.)", "api_key")
        return
    if service.live_streams >= settings.max_live:
        await _end(websocket, 1013, f"The server already runs {settings.max_live} live streams. Try again later.",
                   "busy")
        return
    service.live_streams += 1
    try:
        await _serve_stream(websocket, service)
    except WebSocketDisconnect:
        pass
    finally:
        service.live_streams -= 1


async def _serve_stream(websocket: WebSocket, service: PredictionService) -> None:
    recognizer = service.recognizer
    top_k = websocket.query_params.get("top_k", "3")
    if not (top_k.isascii() and top_k.isdigit() and 1 <= int(top_k) <= 1000):
        await _end(websocket, 1008, f"top_k must be a whole number from 1 to 1000, not {top_k[:20]!r}.",
                   "invalid_parameters")
        return
    live = LiveRecognizer(recognizer, top_k=int(top_k))  # it keeps 1 to all
    await websocket.send_json({"type": "ready", "sample_interval_s": round(live.step_s, 4),
                               "window_s": round(recognizer.timeline.window_s, 3),
                               "image_size": recognizer.spec.image_size, "labels": recognizer.labels})
    started = last_frame = time.monotonic()
    idle_s = service.settings.live_idle_timeout_s
    while True:
        try:  # only frames count as activity: a client sending text alone cannot hold a live place
            message = await asyncio.wait_for(websocket.receive(),
                                             timeout=max(0.05, idle_s - (time.monotonic() - last_frame)))
        except TimeoutError:
            await _end(websocket, 4408, f"No frame came for {idle_s:g} s, so the stream was closed.", "idle")
            return
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            continue  # text messages carry nothing the server needs
        last_frame = time.monotonic()
        if len(data) > MAX_FRAME_BYTES:
            await _end(websocket, 1009, f"A frame was {len(data):,} bytes, over the limit of {MAX_FRAME_BYTES:,}. "
                                        "Send smaller JPEG frames.", "frame_too_large")
            return
        arrived = time.monotonic()
        if not live.due(arrived - started):
            await websocket.send_json({"type": "skipped"})
            continue
        job: Job = (read_image, (data, recognizer.spec.image_size, recognizer.limits), {})
        try:  # a frame waits for a worker only briefly: better to skip it than to fall behind
            image = await service.pool.run(job, next, wait_s=LIVE_WORKER_WAIT_S)
        except DecodersBusy:
            await websocket.send_json({"type": "skipped"})  # the next frame comes soon
            continue
        except WorkerLost as exc:  # not the frame's fault: the client may connect again
            await _end(websocket, 1013, str(exc), exc.reason)
            return
        # The frame's fault: not an image, or one the decoder failed on (all else a decode worker raises).
        except (VideoError, DecodeCrashed, DecodeFailed, DecodeTimedOut) as exc:
            await _end(websocket, 1003, str(exc), exc.reason)
            return
        answer = await run_in_threadpool(live.add, image, arrived - started, arrived)
        if answer is None:
            await websocket.send_json({"type": "warming_up", "frames": len(live.units), "needed": live.sampling.span})
        else:
            await websocket.send_json({"type": "prediction", **answer.to_dict()})
        last_frame = time.monotonic()  # the wait for the next frame starts once this one is answered
