"""Dynamic batching: frames from concurrent predictions go through the encoder together.

Each prediction runs on its own thread and asks for its frames' features; a single runner thread
takes every request waiting (up to `max_frames` frames), waits `window_s` more for others when
asked to, runs the encoder once on all of them (the encoder is per frame, so frames of different
videos simply line up along the time axis) and hands each request its own rows. With no window
nothing waits: a lone request runs at once, and under load the requests that arrive while one
batch runs form the next.

If a batch fails, each of its requests is run alone, so one request's failure reaches no other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty, Queue

import numpy as np


@dataclass
class _Request:
    frames: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class FrameBatcher:
    """`encode(frames)` from any thread; the features of those frames, computed in a batch."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], *, window_s: float = 0.0,
                 max_frames: int = 64) -> None:
        self.run, self.window_s, self.max_frames = run, window_s, max_frames
        self.batches = 0  # how many encoder runs answered how many requests (tests read them)
        self.requests = 0
        self._queue: Queue[_Request] = Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def encode(self, frames: np.ndarray) -> np.ndarray:
        request = _Request(frames)
        self._start()
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="actionrec-batcher", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        held: _Request | None = None  # came while a batch filled, and would have overfilled it
        while True:
            batch = [held or self._queue.get()]
            held = None
            frames = len(batch[0].frames)
            deadline = time.monotonic() + self.window_s
            while frames < self.max_frames:
                try:
                    request = self._queue.get(timeout=max(0.0, deadline - time.monotonic())) if self.window_s \
                        else self._queue.get_nowait()
                except Empty:
                    break
                if frames + len(request.frames) > self.max_frames:
                    held = request  # it starts the next batch: only a request alone passes max_frames
                    break
                batch.append(request)
                frames += len(request.frames)
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        try:
            features = self.run(np.concatenate([request.frames for request in batch]))
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            for request in batch:  # alone, so that only a request that fails by itself fails
                self._run([request])
            return
        self.batches += 1
        self.requests += len(batch)
        start = 0
        for request in batch:
            request.result = features[start : start + len(request.frames)]
            start += len(request.frames)
            request.done.set()
