"""What a model sees of a video, and which frames make it: the one definition of frame sampling.

Training, evaluation, export and serving all describe a clip with `ClipSpec` and pick its frames
with `sample_indices`, so what a model was trained on is what it is served. Pure NumPy: no
decoding here (that is `actionrec.video.decode`).

Sampling by time, not by index: a clip's time span is split into `num_frames` equal segments and
the frame on screen at each segment's centre is taken (training: a random moment inside each
segment). With variable frame rates an index is not a time, so frames are located by their
presentation times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# The version of the sampling rule below (`sample_indices`, `segment_targets`, `Timeline`): a model
# card records it, a file sampled by another version is refused at load, and training's cache keys
# include it. Change it whenever the frames a clip is sampled into change.
SAMPLING_VERSION = 1
SAMPLING_RULE = (
    "split the clip's time span into num_frames equal segments and take the frame shown at each "
    "segment's centre (training: a random moment inside each segment); frames are RGB, the shorter "
    "side resized to image_size with area interpolation, then the centre square cropped; the "
    "container's display rotation is applied; clips with fewer frames repeat frames"
)


@dataclass(frozen=True)
class ClipSpec:
    """What a model sees: `num_frames` RGB frames of `image_size` x `image_size` pixels."""

    num_frames: int = 16
    image_size: int = 224

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {self.num_frames}")
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be between 16 and 1024 pixels, got {self.image_size}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on what one video may cost. Defaults suit untrusted uploads."""

    max_pixels: int = 4096 * 2304  # 4K UHD and DCI 4K fit; 8K does not
    max_duration_s: float = 20 * 60.0
    min_usable_fraction: float = 0.5  # of num_frames, for a stream that breaks part way


@dataclass(frozen=True)
class VideoInfo:
    """Facts about the whole video, as measured while reading it."""

    duration_s: float
    fps: float
    width: int  # as displayed, after rotation
    height: int
    rotation: int  # degrees anticlockwise applied to the stored frames to display them
    num_frames: int  # frames in the stream, counted from its packets
    codec: str
    container: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Clip:
    """`frames` is (num_frames, image_size, image_size, 3) uint8 RGB, taken from [start_s, end_s)."""

    frames: np.ndarray
    frame_indices: list[int]
    frame_times: list[float]
    info: VideoInfo
    warnings: list[str] = field(default_factory=list)
    start_s: float = 0.0
    end_s: float = 0.0


@dataclass(frozen=True)
class PlannedClip:
    """Which frames (by index into the stream) make one clip, and the span they were spread over."""

    indices: np.ndarray
    start_s: float
    end_s: float


def segment_targets(
    start: float, end: float, num_frames: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Moments in [start, end): segment centres, or uniform random moments inside each segment."""
    edges = np.linspace(start, end, num_frames + 1)
    if rng is None:
        return (edges[:-1] + edges[1:]) / 2
    return edges[:-1] + rng.random(num_frames) * (edges[1:] - edges[:-1])


def frames_at(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each target moment (the last frame starting at or before it)."""
    indices = np.searchsorted(times, targets, side="right") - 1
    return np.clip(indices, 0, len(times) - 1)


def sample_indices(
    times: Sequence[float] | np.ndarray,
    num_frames: int,
    rng: np.random.Generator | None = None,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Pick `num_frames` frame indices spread over [start, end) of a clip whose frames start at `times`.

    `times` must be sorted. With fewer frames than `num_frames`, frames repeat.
    """
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0:
        raise ValueError("cannot sample from a clip with no frames")
    start = times[0] if start is None else start
    end = span(times) if end is None else end
    return frames_at(times, segment_targets(start, end, num_frames, rng))


def frame_duration(times: np.ndarray) -> float:
    """How long the last frame stays on screen: as long as the one before it (frame rates vary)."""
    if len(times) < 2 or times[-1] <= times[-2]:
        return 1 / 25
    return float(times[-1] - times[-2])


def span(times: np.ndarray) -> float:
    """The duration of frames starting at `times` (from 0): until the last frame leaves the screen."""
    return float(times[-1] + frame_duration(times))


@dataclass(frozen=True)
class Timeline:
    """A whole-video timeline's sample grid: one frame every `interval_s`, and windows of
    `frames_per_window` consecutive samples every `stride` samples.

    A window's samples are the centres of `frames_per_window` equal segments of its span: exactly
    how a training clip of that length is sampled. So windows match training clips when the
    interval is the training clips' typical duration divided by the model's frame count, and
    each sampled frame is read and encoded once however many windows use it.
    """

    interval_s: float
    frames_per_window: int
    stride: int

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.frames_per_window < 1 or self.stride < 1:
            raise ValueError(f"invalid timeline {self}")

    @classmethod
    def for_clips(cls, num_frames: int, clip_duration_s: float) -> Timeline:
        """Windows as long as `clip_duration_s`, overlapping by half."""
        return cls(clip_duration_s / num_frames, num_frames, max(1, num_frames // 2))

    @property
    def window_s(self) -> float:
        return self.interval_s * self.frames_per_window

    def sample_times(self, duration_s: float) -> np.ndarray:
        """Moments of the samples over [0, duration_s); none when the video is shorter than a window."""
        count = int(math.floor(duration_s / self.interval_s + 1e-9))
        if count < self.frames_per_window:
            return np.zeros(0)
        return (np.arange(count) + 0.5) * self.interval_s

    def live(self, update_interval_s: float) -> LiveSampling:
        """This grid followed as a live source plays: a sample every `interval_s`, or where that is
        longer than `update_interval_s` (the longest wait for a new answer), every `interval_s / k`,
        k the fewest parts that bring it within; each window then reads every k-th sample, so it
        still spans what a training clip spans."""
        if not update_interval_s > 0:
            raise ValueError(f"the update interval must be more than 0 s, not {update_interval_s}")
        every = max(1, math.ceil(self.interval_s / update_interval_s - 1e-9))
        return LiveSampling(self.interval_s / every, every, self.frames_per_window)

    def windows(self, num_samples: int) -> list[int]:
        """The first sample of each window; the last window ends with the last sample."""
        if num_samples < self.frames_per_window:
            return []
        last = num_samples - self.frames_per_window
        starts = list(range(0, last + 1, self.stride))
        if starts[-1] != last:
            starts.append(last)
        return starts


@dataclass(frozen=True)
class LiveSampling:
    """A `Timeline` followed live (`Timeline.live`): a sample every `step_s`, and the newest window
    the `frames_per_window` samples `every` apart that end with the newest sample."""

    step_s: float
    every: int
    frames_per_window: int

    @property
    def span(self) -> int:
        """How many of the latest samples a window reaches over, the newest included."""
        return (self.frames_per_window - 1) * self.every + 1

    def window(self, samples: Sequence[T]) -> list[T]:
        """The newest window's samples, oldest first, from the latest `span` (or more) samples."""
        return list(samples)[-self.span :: self.every]

