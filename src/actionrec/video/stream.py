"""Frames for a prediction: the whole-video clip and a timeline's samples, each frame read once and
handed out in bounded chunks as it is decoded.

`stream_prediction_frames` runs where decoding is safe to crash (a server's worker process, or
the caller's own process) and yields messages: a `FramePlan`, then `FrameChunk`s, then
`FramesDone`. The consumer (`actionrec.runtime.recognizer`) encodes each chunk as it arrives, so memory
stays bounded whatever the video's length.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from actionrec.errors import UndecodableVideoError
from actionrec.video.decode import Convert, DecodeOutcome, broken_stream, displayed, read_frames, rereadable
from actionrec.video.probe import VideoSource, probe
from actionrec.video.spec import ClipSpec, DecodeLimits, Timeline, VideoInfo, frames_at, sample_indices, span

# Frames handed out at a time. A clip's answer takes them four at a time, so the encoder works on the
# first frames while the rest are read: measured here (2 cores, a 16 x 224 model, `Recognizer.predict`,
# medians of 9), a real 320x240 XviD clip's answer took 114 ms against 159 ms in one chunk of 16; a
# timeline keeps 16, its frames arriving steadily anyway. Larger chunks do not pay even for a small
# model: the 8-frame 64 px encoder on one thread took 0.43 CPU s for 1,024 frames 64 at a time,
# against 0.37 s 16 at a time.
CLIP_CHUNK_FRAMES = 4
TIMELINE_CHUNK_FRAMES = 16


@dataclass(frozen=True)
class FramePlan:
    """Which frames a prediction needs: the whole-video clip, and a timeline's samples and windows."""

    clip: np.ndarray  # frame indices of the whole-video clip (num_frames of them)
    samples: np.ndarray  # frame index of each timeline sample, in time order
    windows: list[tuple[int, float, float]]  # (first sample, start_s, end_s) of each timeline window
    timeline: bool = False  # asked for; without windows when the video is shorter than one


@dataclass(frozen=True)
class FrameChunk:
    """Converted frames, in increasing frame index order."""

    indices: np.ndarray
    frames: np.ndarray  # (n, image_size, image_size, 3) uint8 RGB


@dataclass(frozen=True)
class ClipReplanned:
    """The stream broke before all of the clip's frames: these replace its frame indices."""

    clip: np.ndarray


@dataclass(frozen=True)
class FramesDone:
    info: VideoInfo
    clip_times: list[float]
    warnings: list[str]
    decode_ms: float


PredictionMessage = FramePlan | FrameChunk | ClipReplanned | FramesDone


def stream_prediction_frames(source: VideoSource, spec: ClipSpec, limits: DecodeLimits,
                             timeline: Timeline | None = None, *, name: str | None = None,
                             chunk_frames: int | None = None, convert: Convert | None = None
                             ) -> Iterator[PredictionMessage]:
    """Read what a prediction needs, frames handed out as they are decoded: a `FramePlan`, then
    `FrameChunk`s of at most `chunk_frames` frames (default: `CLIP_CHUNK_FRAMES`, or
    `TIMELINE_CHUNK_FRAMES` with a timeline), then `FramesDone`.

    Each frame is read once, whether the clip, the timeline or both use it, so memory stays
    bounded whatever the video's length. Where the stream breaks before the clip's last frame, a
    `ClipReplanned` and the new clip frames follow (reading the part that decoded again). `name`
    is how messages call the video. `convert`: what each frame gives in place of its model input
    (`FixedRegionCrops`: the model input and each region's crop; chunks are then (n, regions + 1, S,
    S, 3)).
    """
    clock = _WorkClock()
    chunk_frames = chunk_frames or (CLIP_CHUNK_FRAMES if timeline is None else TIMELINE_CHUNK_FRAMES)
    source = rereadable(source)
    video = probe(source, limits, name)
    name = video.name
    clip = sample_indices(video.times, spec.num_frames)
    samples, windows = np.zeros(0, dtype=np.int64), []
    if timeline is not None:
        sample_times = timeline.sample_times(span(video.times))
        if len(sample_times):
            samples = frames_at(video.times, sample_times)
            windows = [(first, first * timeline.interval_s, (first + timeline.frames_per_window) * timeline.interval_s)
                       for first in timeline.windows(len(samples))]
    yield from clock.paused([FramePlan(clip, samples, windows, timeline is not None)])

    outcome = DecodeOutcome()
    read: set[int] = set()
    wanted = np.union1d(clip, samples)
    yield from clock.paused(_chunks(read_frames(source, video, wanted, spec.image_size, limits, outcome,
                                                convert=convert), chunk_frames, read))
    warnings = list(outcome.warnings)
    times = video.times
    if not read.issuperset(wanted.tolist()):  # the stream broke: a timeline ends early, a clip is planned again
        warnings.append(broken_stream(video, outcome, spec, limits, name))
    if not read.issuperset(clip.tolist()):
        times = video.times[: outcome.decoded]
        clip = sample_indices(times, spec.num_frames)
        yield from clock.paused([ClipReplanned(clip)])
        read.clear()
        again = DecodeOutcome()
        yield from clock.paused(_chunks(read_frames(source, video, clip, spec.image_size, limits, again, seek=False,
                                                    convert=convert), chunk_frames, read))
        if not read.issuperset(clip.tolist()):
            raise UndecodableVideoError(f"{name}: decoding gave different results on each pass.")
    yield FramesDone(displayed(video.info, outcome.rotation), [round(float(times[i]), 3) for i in clip], warnings,
                     clock.seconds() * 1000)


class _WorkClock:
    """Time spent reading, leaving out the time the consumer takes between the messages."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.away = 0.0

    def paused(self, messages: Iterable[PredictionMessage]) -> Iterator[PredictionMessage]:
        for message in messages:
            left = time.perf_counter()
            yield message
            self.away += time.perf_counter() - left

    def seconds(self) -> float:
        return time.perf_counter() - self.started - self.away


def _chunks(frames: Iterator[tuple[int, np.ndarray]], size: int, read: set[int]) -> Iterator[FrameChunk]:
    """Group frames into chunks of `size`, noting each index in `read`."""
    indices: list[int] = []
    images: list[np.ndarray] = []
    for index, image in frames:
        read.add(index)
        indices.append(index)
        images.append(image)
        if len(images) == size:
            yield FrameChunk(np.asarray(indices), np.stack(images))
            indices, images = [], []
    if images:
        yield FrameChunk(np.asarray(indices), np.stack(images))
