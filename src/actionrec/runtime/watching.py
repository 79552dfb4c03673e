"""Live recognition: a camera, a network stream, or a file played at its own speed.

Frames arrive at the source's rate (25 or 30 a second); the model needs only its sampling rate
(its frame count over its training clips' typical duration). `LiveRecognizer` takes a frame
whenever a sample is due, encodes it at once, keeps the last window of encoded frames in a ring,
and answers from the newest window. The steps are the model's timeline's (`Timeline.live` in
`actionrec.video.spec`, the one definition of sampling): when samples fall further apart than the
wanted update interval, it samples at a finer step and reads every k-th one, so the answer
changes at least that often while every window still spans what a training clip spanned. The
answer lags the newest frame by one encoder run and one head run.

`watch` runs it on a source opened with PyAV: `actionrec watch SOURCE`, and the server's
WebSocket route, feed it frames.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from actionrec.errors import ActionrecError
from actionrec.runtime.answer import ScoredAction
from actionrec.runtime.recognizer import Recognizer
from actionrec.video.decode import checked_model_input

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


@dataclass
class LiveAnswer:
    time_s: float  # the source's time of the newest frame the answer read
    action: str
    confidence: float
    top_k: list[ScoredAction]  # best first
    uncertain: bool
    lag_s: float  # from that frame's arrival to the answer

    def to_dict(self) -> dict:
        return asdict(self)


class LiveRecognizer:
    """Samples frames as they arrive and answers from the newest window of them."""

    def __init__(self, recognizer: Recognizer, update_interval_s: float = 0.5, top_k: int = 3) -> None:
        self.recognizer = recognizer
        self.top_k = top_k
        self.sampling = recognizer.timeline.live(update_interval_s)  # ValueError unless above 0 s
        self.step_s = self.sampling.step_s
        self.units: deque[np.ndarray] = deque(maxlen=self.sampling.span)
        self.next_sample_s: float | None = None

    def due(self, time_s: float) -> bool:
        """Whether the frame shown at `time_s` (source time) should be sampled; a quarter step
        early counts, so frames sent at the sampling rate over a jittery network are all taken."""
        return self.next_sample_s is None or time_s >= self.next_sample_s - self.step_s / 4

    def add(self, image: np.ndarray, time_s: float, arrived: float | None = None) -> LiveAnswer | None:
        """Take a model-ready frame (size x size x 3 RGB) shown at `time_s`; returns an answer once a
        whole window has been seen, else None. `arrived` (time.monotonic()) dates it for the lag."""
        arrived = time.monotonic() if arrived is None else arrived
        if self.next_sample_s is None:
            self.next_sample_s = time_s
        # Catch up without a burst of samples after a stall: the next one is due one step on.
        self.next_sample_s = max(self.next_sample_s + self.step_s, time_s + self.step_s / 2)
        self.units.append(self.recognizer.encode(image[None])[0])
        if len(self.units) < self.sampling.span:
            return None
        window = np.stack(self.sampling.window(self.units))[None]
        top, check = self.recognizer.rank(self.recognizer.head(window)[0], self.top_k, window[0])
        return LiveAnswer(round(time_s, 3), top[0].action, top[0].confidence, top, check.unknown,
                          round(time.monotonic() - arrived, 4))


# --------------------------------------------------------------------------- sources


class SourceError(ActionrecError):
    """A live source cannot be opened, or stopped delivering frames."""


def describe_source(source: str) -> tuple[str, dict, str]:
    """(what to open, av.open options, kind: "camera", "network" or "file") for SOURCE as typed."""
    if source.isdigit():
        return f"/dev/video{source}", {"format": "v4l2"}, "camera"
    if source.startswith("/dev/video"):
        return source, {"format": "v4l2"}, "camera"
    if source.lower().startswith(NETWORK_SCHEMES):
        options = {"rtsp_transport": "tcp"} if source.lower().startswith("rtsp") else {}
        return source, {"options": options, "timeout": (10.0, 10.0)}, "network"
    if not Path(source).is_file():
        raise SourceError(f"{source}: no such file, camera or stream URL. Give a camera number (0), a device "
                          "(/dev/video0), a stream URL (rtsp://...) or a video file.")
    return source, {}, "file"


def frames_of(source: str, realtime: bool = True) -> Iterator[tuple[av.VideoFrame, float, float]]:
    """(frame, its time on the source in seconds, when it arrived) from a source, until it ends.

    A file is played at its own speed when `realtime`; a camera or stream gives frames as they come.
    Raises SourceError when the source cannot be opened or breaks.
    """
    target, options, kind = describe_source(source)
    try:
        container = av.open(target, mode="r", metadata_errors="ignore", **options)
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"{source}: cannot be opened ({getattr(exc, 'strerror', None) or exc}).") from None
    try:
        if not container.streams.video:
            raise SourceError(f"{source}: has no video stream.")
        stream = container.streams.video[0]
        started = first = None
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                if first is None:
                    started, first = time.monotonic(), frame.time
                media_s = frame.time - first
                if realtime and kind == "file":
                    wait = started + media_s - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                yield frame, media_s, time.monotonic()
        except av.error.FFmpegError as exc:
            raise SourceError(f"{source}: the stream broke ({getattr(exc, 'strerror', None) or exc}).") from None
    finally:
        container.close()


def watch(recognizer: Recognizer, source: str, on_answer: Callable[[LiveAnswer], None],
          on_event: Callable[[str, str], None], *, realtime: bool = True, reconnect: bool = True,
          update_interval_s: float = 0.5, top_k: int = 3) -> None:
    """Recognize actions in `source` until it ends (or Ctrl-C). Network streams that break or end
    are opened again, waiting longer each time; `on_event(kind, text)` hears of it."""
    kind = describe_source(source)[2]
    live = LiveRecognizer(recognizer, update_interval_s, top_k)
    on_event("started", f"{source}: sampling a frame every {live.step_s:.2f} s, answers over "
                        f"{recognizer.timeline.window_s:.1f} s windows")
    delay = 1.0
    while True:
        try:
            for frame, media_s, arrived in frames_of(source, realtime):
                if live.due(media_s):
                    image = checked_model_input(frame, recognizer.spec.image_size, recognizer.limits,
                                                f"{source}: a frame")
                    answer = live.add(image, media_s, arrived)
                    if answer is not None:
                        on_answer(answer)
                        delay = 1.0
            if kind != "network" or not reconnect:
                on_event("ended", f"{source}: the video ended")
                return
            on_event("reconnecting", f"{source}: the stream ended; opening it again in {delay:.0f} s")
        except SourceError as exc:
            if kind != "network" or not reconnect:
                raise
            on_event("reconnecting", f"{exc} Opening it again in {delay:.0f} s.")
        time.sleep(delay)
        delay = min(delay * 2, 30.0)
        live = LiveRecognizer(recognizer, update_interval_s, top_k)
