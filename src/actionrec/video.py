"""Reading videos: sample frames over time, decode only what is needed, return model-ready RGB.

This module is the one definition of frame sampling and preprocessing. Training, evaluation,
export metadata and serving all go through `ClipSpec` and `read_clip`/`read_views`/`read_windows`.

How a clip is read:
1. Probe: demux the video stream's packets (no decoding) to count the frames and collect their
   presentation times. Container headers are not trusted: they over-report frame counts, and
   with variable frame rates a frame's index is not its time.
2. Plan: split the clip's time span into `num_frames` equal segments and pick the frame shown at
   each segment's centre (evaluation, serving) or at a random moment inside it (training).
3. Decode sequentially and convert to RGB, resized and cropped, only the frames that were picked;
   stop once the last one is reached.
4. If the stream breaks part way, plan again over the frames that did decode and say so in
   `warnings`, as long as enough of them came out.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Sequence, Union

import av
import numpy as np

from actionrec.errors import (
    EmptyVideoError,
    FrameTooLargeError,
    NotAVideoError,
    NoVideoStreamError,
    UndecodableVideoError,
    VideoError,
    VideoNotFoundError,
    VideoTooLongError,
)

VideoSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]

# ImageNet statistics, applied inside the model graph (see model.FramePreprocess); recorded in
# every exported model's metadata so other runtimes can reproduce them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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


@dataclass
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
    """`frames` is (num_frames, image_size, image_size, 3) uint8 RGB."""

    frames: np.ndarray
    frame_indices: list[int]
    frame_times: list[float]
    info: VideoInfo
    warnings: list[str] = field(default_factory=list)
    start_s: float = 0.0
    end_s: float = 0.0


# --------------------------------------------------------------------------- sampling


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
    times: Sequence[float],
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
    end = times[-1] + _frame_duration(times) if end is None else end
    return frames_at(times, segment_targets(start, end, num_frames, rng))


def _frame_duration(times: np.ndarray) -> float:
    """How long the last frame stays on screen: as long as the one before it (frame rates vary)."""
    if len(times) < 2 or times[-1] <= times[-2]:
        return 1 / 25
    return float(times[-1] - times[-2])


def window_bounds(duration_s: float, window_s: float, stride_s: float) -> list[tuple[float, float]]:
    """Sliding windows covering [0, duration_s]; the last one ends at the end of the video."""
    if window_s <= 0 or stride_s <= 0:
        raise ValueError("window and stride must be positive")
    if duration_s <= window_s:
        return [(0.0, duration_s)]
    count = math.ceil((duration_s - window_s) / stride_s - 1e-9) + 1  # no window for rounding error
    starts = [min(i * stride_s, duration_s - window_s) for i in range(count)]
    return [(s, s + window_s) for s in starts]


# --------------------------------------------------------------------------- opening and probing


@dataclass
class _Probe:
    times: np.ndarray  # presentation time (s) of each frame, sorted, relative to the first
    info: VideoInfo


def _open(source: VideoSource) -> av.container.InputContainer:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise EmptyVideoError("The video is empty (0 bytes). Send the file's contents.")
        file: object = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise VideoNotFoundError(f"{path}: no such file.")
        if path.stat().st_size == 0:
            raise EmptyVideoError(f"{path}: the file is empty (0 bytes).")
        file = str(path)
    else:
        file = source
    name = _describe(source)
    try:
        return av.open(file, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise NotAVideoError(
            f"{name}: not a video file FFmpeg can read ({_ffmpeg_reason(exc)}). "
            "Check that it is a complete video (MP4, AVI, MOV, MKV, WebM...)."
        ) from None


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _describe(source: VideoSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "the uploaded video"
    return getattr(source, "name", None) or "the video"


def _probe(container: av.container.InputContainer, source: VideoSource, limits: DecodeLimits) -> _Probe:
    name = _describe(source)
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        kind = container.format.name.removesuffix("_pipe")
        raise NotAVideoError(f"{name}: is a still image ({kind}), not a video. Send a video file.")
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise NoVideoStreamError(f"{name}: has no video stream (streams found: {kinds}).")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = ctx.width or 0, ctx.height or 0
    if width * height > limits.max_pixels:
        raise FrameTooLargeError(
            f"{name}: frames are {width}x{height}, larger than the limit of "
            f"{limits.max_pixels:,} pixels. Downscale the video (e.g. to 1080p) and try again."
        )
    # Headers can be wrong (a truncated file keeps its full duration): refuse on them alone only
    # when far over the limit, which spares counting the packets of a huge file.
    header_duration = _header_duration(container, stream)
    if header_duration is not None and header_duration > 2 * limits.max_duration_s:
        raise _too_long(name, header_duration, limits)

    pts_list: list[int] = []
    packets = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packets += 1
            if packet.pts is not None:
                pts_list.append(packet.pts)
    except av.error.FFmpegError:
        pass  # a damaged container: use the packets read so far; decoding will tell the rest
    if packets == 0:
        raise UndecodableVideoError(f"{name}: the video stream holds no frames.")

    time_base = float(stream.time_base) if stream.time_base else 0.0
    rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    if len(pts_list) == packets and time_base > 0:
        times = np.sort(np.asarray(pts_list, dtype=np.float64)) * time_base
        times -= times[0]
    else:
        times = np.arange(packets, dtype=np.float64) / rate
    duration = float(times[-1] + _frame_duration(times))
    if duration > limits.max_duration_s:
        raise _too_long(name, duration, limits)
    fps = (packets - 1) / times[-1] if packets > 1 and times[-1] > 0 else rate

    info = VideoInfo(
        duration_s=round(duration, 3),
        fps=round(float(fps), 3),
        width=width,
        height=height,
        rotation=0,
        num_frames=packets,
        codec=ctx.name,
        container=container.format.name,
    )
    return _Probe(times=times, info=info)


def _header_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _too_long(name: str, duration: float, limits: DecodeLimits) -> VideoTooLongError:
    return VideoTooLongError(
        f"{name}: lasts {duration:.0f} s, longer than the limit of {limits.max_duration_s:.0f} s. "
        "Cut it into shorter pieces or raise the limit."
    )


# --------------------------------------------------------------------------- decoding


def _convert(frame: av.VideoFrame, image_size: int) -> np.ndarray:
    """Resize the shorter side to image_size, crop the centre square, apply display rotation."""
    w, h = frame.width, frame.height
    scale = image_size / min(w, h)
    new_w, new_h = max(image_size, round(w * scale)), max(image_size, round(h * scale))
    rgb = frame.reformat(width=new_w, height=new_h, format="rgb24", interpolation="AREA").to_ndarray()
    top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
    square = rgb[top : top + image_size, left : left + image_size]
    # Cropping the centre square commutes with quarter turns, so rotating the small crop is enough.
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    if quarter_turns:
        square = np.rot90(square, k=quarter_turns)
    return np.ascontiguousarray(square)


def _decode_indices(
    source: VideoSource, wanted: set[int], image_size: int, limits: DecodeLimits
) -> tuple[dict[int, np.ndarray], int, str | None, int]:
    """Decode sequentially, converting only the `wanted` frame indices.

    Returns (converted frames by index, frames decoded, error text if the stream broke, rotation).
    """
    container = _open(source)
    converted: dict[int, np.ndarray] = {}
    decoded = 0
    rotation = 0
    last_wanted = max(wanted)
    try:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if decoded in wanted:
                if frame.width * frame.height > limits.max_pixels:
                    raise FrameTooLargeError(
                        f"{_describe(source)}: a frame is {frame.width}x{frame.height}, larger than "
                        f"the limit of {limits.max_pixels:,} pixels."
                    )
                rotation = int(frame.rotation or 0)
                converted[decoded] = _convert(frame, image_size)
            decoded += 1
            if decoded > last_wanted:
                break
        return converted, decoded, None, rotation
    except av.error.FFmpegError as exc:
        return converted, decoded, _ffmpeg_reason(exc), rotation
    finally:
        container.close()


def _read(
    source: VideoSource,
    spec: ClipSpec,
    plan: Callable[[np.ndarray], list[np.ndarray]],
    limits: DecodeLimits,
) -> tuple[list[np.ndarray], list[np.ndarray], _Probe, list[str]]:
    """Probe, plan indices for one or more clips, decode once, and return each clip's frames."""
    if hasattr(source, "seek"):
        source = source.read()  # a file object is read twice (probe, decode): keep it in memory
    container = _open(source)
    try:
        probe = _probe(container, source, limits)
    finally:
        container.close()

    times = probe.times
    warnings: list[str] = []
    for _attempt in range(2):
        index_groups = plan(times)
        wanted = {int(i) for group in index_groups for i in group}
        converted, decoded, broke, rotation = _decode_indices(source, wanted, spec.image_size, limits)
        if len(converted) == len(wanted):
            break
        # Fewer frames came out than the packets promised: the stream is damaged or truncated.
        usable = max(1, math.ceil(spec.num_frames * limits.min_usable_fraction))
        if decoded < min(usable, len(probe.times)):
            detail = f" ({broke})" if broke else ""
            raise UndecodableVideoError(
                f"{_describe(source)}: only {decoded} of {probe.info.num_frames} frames could be "
                f"decoded{detail}; the file is damaged or truncated. Re-encode or re-download it."
            )
        warnings.append(
            f"the video stream broke after {decoded} of {probe.info.num_frames} frames"
            f"{' (' + broke + ')' if broke else ''}; frames were taken from the part that decoded"
        )
        times = probe.times[:decoded]
    else:
        raise UndecodableVideoError(f"{_describe(source)}: decoding gave different results on each pass.")

    if rotation % 180:
        probe.info.width, probe.info.height = probe.info.height, probe.info.width
    probe.info.rotation = rotation
    frame_groups = [np.stack([converted[int(i)] for i in group]) for group in index_groups]
    return frame_groups, index_groups, probe, warnings


def _clip(frames: np.ndarray, indices: np.ndarray, probe: _Probe, warnings: list[str],
          start: float, end: float) -> Clip:
    return Clip(
        frames=frames,
        frame_indices=[int(i) for i in indices],
        frame_times=[round(float(probe.times[i]), 3) for i in indices],
        info=probe.info,
        warnings=list(warnings),
        start_s=round(start, 3),
        end_s=round(end, 3),
    )


def read_clip(
    source: VideoSource,
    spec: ClipSpec,
    *,
    rng: np.random.Generator | None = None,
    limits: DecodeLimits = DecodeLimits(),
) -> Clip:
    """Read `spec.num_frames` frames spread over the whole video.

    Segment centres by default; with `rng`, a random moment inside each segment (training).
    Raises a `VideoError` subclass for anything wrong with the video.
    """
    plan = lambda times: [sample_indices(times, spec.num_frames, rng)]  # noqa: E731
    groups, indices, probe, warnings = _read(source, spec, plan, limits)
    return _clip(groups[0], indices[0], probe, warnings, 0.0, probe.info.duration_s)


def read_views(
    source: VideoSource,
    spec: ClipSpec,
    *,
    views: int,
    rng: np.random.Generator | None = None,
    limits: DecodeLimits = DecodeLimits(),
) -> list[Clip]:
    """Several temporal views of one video in one decoding pass.

    View 0 takes segment centres, exactly as `read_clip`; the others take random moments inside
    each segment (from `rng`, or a fixed seed).
    """
    rng = rng if rng is not None else np.random.default_rng(0)

    def plan(times: np.ndarray) -> list[np.ndarray]:
        return [sample_indices(times, spec.num_frames, rng if view else None) for view in range(views)]

    groups, indices, probe, warnings = _read(source, spec, plan, limits)
    end = probe.info.duration_s
    return [_clip(f, i, probe, warnings, 0.0, end) for f, i in zip(groups, indices)]


def read_windows(
    source: VideoSource,
    spec: ClipSpec,
    *,
    window_s: float,
    stride_s: float,
    limits: DecodeLimits = DecodeLimits(),
    with_whole_video: bool = False,
    max_windows: int | None = None,
) -> list[Clip]:
    """Clips of `window_s` seconds every `stride_s` seconds, for locating actions in long videos.

    A video shorter than one window gives one window covering all of it. With `with_whole_video`,
    the first clip is the whole video, as `read_clip` gives it. When more than `max_windows`
    windows would be needed, the stride grows to keep within it. One decoding pass.
    """
    bounds: list[tuple[float, float]] = []

    def plan(times: np.ndarray) -> list[np.ndarray]:
        duration = float(times[-1] + _frame_duration(times))
        stride = stride_s
        if max_windows and duration > window_s:
            stride = max(stride_s, (duration - window_s) / max(1, max_windows - 1))
        bounds[:] = window_bounds(duration, window_s, stride)
        if with_whole_video:
            bounds.insert(0, (0.0, duration))
        return [sample_indices(times, spec.num_frames, start=s, end=e) for s, e in bounds]

    groups, indices, probe, warnings = _read(source, spec, plan, limits)
    return [_clip(f, i, probe, warnings, s, e) for f, i, (s, e) in zip(groups, indices, bounds)]


__all__ = [
    "Clip",
    "ClipSpec",
    "DecodeLimits",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SAMPLING_RULE",
    "VideoError",
    "VideoInfo",
    "read_clip",
    "read_views",
    "read_windows",
    "sample_indices",
    "window_bounds",
]
