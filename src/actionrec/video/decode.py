"""Reading videos with PyAV: probe, decode only what a plan needs, return model-ready RGB clips.

How a clip is read:
1. Probe: demux the video stream's packets (no decoding) to count the frames and collect their
   presentation times. Container headers are not trusted: they over-report frame counts, and
   with variable frame rates a frame's index is not its time.
2. Plan: pick the frames of each clip by time (`actionrec.video.spec.sample_indices`).
3. Decode sequentially and convert to RGB, resized and cropped, only the frames that were picked;
   stop once the last one is reached.
4. If the stream breaks part way, plan again over the frames that did decode and say so in
   `warnings`, as long as enough of them came out.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Callable, Union

import av
import numpy as np

from actionrec.errors import (
    EmptyVideoError,
    FrameTooLargeError,
    NotAVideoError,
    NoVideoStreamError,
    UndecodableVideoError,
    VideoNotFoundError,
    VideoTooLongError,
)
from actionrec.video.spec import (
    Clip,
    ClipSpec,
    DecodeLimits,
    PlannedClip,
    VideoInfo,
    sample_indices,
    span,
    window_bounds,
)

VideoSource = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]

# Plans the clips to take from a stream whose frames start at `times` (seconds, sorted).
Plan = Callable[[np.ndarray], list[PlannedClip]]


# --------------------------------------------------------------------------- opening and probing


@dataclass(frozen=True)
class _Probe:
    times: np.ndarray  # presentation time (s) of each frame, sorted, relative to the first
    info: VideoInfo  # as stored; rotation is known only once a frame is decoded


@dataclass(frozen=True)
class _Decoded:
    frames: dict[int, np.ndarray]  # converted frames by index
    count: int  # frames decoded before stopping
    broke: str | None  # why the stream broke, if it did
    rotation: int


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


def _probe(source: VideoSource, limits: DecodeLimits) -> _Probe:
    container = _open(source)
    try:
        return _probe_container(container, _describe(source), limits)
    finally:
        container.close()


def _probe_container(container: av.container.InputContainer, name: str, limits: DecodeLimits) -> _Probe:
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
    duration = span(times)
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


def _decode_indices(source: VideoSource, wanted: set[int], image_size: int, limits: DecodeLimits) -> _Decoded:
    """Decode sequentially, converting only the `wanted` frame indices; stop after the last one."""
    container = _open(source)
    converted: dict[int, np.ndarray] = {}
    count = 0
    rotation = 0
    last_wanted = max(wanted)
    try:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if count in wanted:
                if frame.width * frame.height > limits.max_pixels:
                    raise FrameTooLargeError(
                        f"{_describe(source)}: a frame is {frame.width}x{frame.height}, larger than "
                        f"the limit of {limits.max_pixels:,} pixels."
                    )
                rotation = int(frame.rotation or 0)
                converted[count] = _convert(frame, image_size)
            count += 1
            if count > last_wanted:
                break
        return _Decoded(converted, count, None, rotation)
    except av.error.FFmpegError as exc:
        return _Decoded(converted, count, _ffmpeg_reason(exc), rotation)
    finally:
        container.close()


def _displayed(info: VideoInfo, rotation: int) -> VideoInfo:
    """`info` as the video is displayed: a quarter turn swaps width and height."""
    width, height = (info.height, info.width) if rotation % 180 else (info.width, info.height)
    return replace(info, width=width, height=height, rotation=rotation)


def _read(source: VideoSource, spec: ClipSpec, plan: Plan, limits: DecodeLimits) -> list[Clip]:
    """Probe, plan one or more clips, decode once, and return the clips."""
    if hasattr(source, "read"):
        source = source.read()  # a file object is read twice (probe, decode): keep it in memory
    probe = _probe(source, limits)
    name = _describe(source)

    times = probe.times
    warnings: list[str] = []
    for _attempt in range(2):
        planned = plan(times)
        wanted = {int(i) for clip in planned for i in clip.indices}
        decoded = _decode_indices(source, wanted, spec.image_size, limits)
        if len(decoded.frames) == len(wanted):
            break
        # Fewer frames came out than the packets promised: the stream is damaged or truncated.
        usable = max(1, math.ceil(spec.num_frames * limits.min_usable_fraction))
        because = f" ({decoded.broke})" if decoded.broke else ""
        if decoded.count < min(usable, len(probe.times)):
            raise UndecodableVideoError(
                f"{name}: only {decoded.count} of {probe.info.num_frames} frames could be "
                f"decoded{because}; the file is damaged or truncated. Re-encode or re-download it."
            )
        warnings.append(f"the video stream broke after {decoded.count} of {probe.info.num_frames} frames"
                        f"{because}; frames were taken from the part that decoded")
        times = probe.times[: decoded.count]
    else:
        raise UndecodableVideoError(f"{name}: decoding gave different results on each pass.")

    info = _displayed(probe.info, decoded.rotation)
    return [
        Clip(
            frames=np.stack([decoded.frames[int(i)] for i in clip.indices]),
            frame_indices=[int(i) for i in clip.indices],
            frame_times=[round(float(times[i]), 3) for i in clip.indices],
            info=info,
            warnings=list(warnings),
            start_s=round(clip.start_s, 3),
            end_s=round(clip.end_s, 3),
        )
        for clip in planned
    ]


# --------------------------------------------------------------------------- the readers


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

    def plan(times: np.ndarray) -> list[PlannedClip]:
        return [PlannedClip(sample_indices(times, spec.num_frames, rng), 0.0, span(times))]

    return _read(source, spec, plan, limits)[0]


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

    def plan(times: np.ndarray) -> list[PlannedClip]:
        return [PlannedClip(sample_indices(times, spec.num_frames, rng if view else None), 0.0, span(times))
                for view in range(views)]

    return _read(source, spec, plan, limits)


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

    def plan(times: np.ndarray) -> list[PlannedClip]:
        duration = span(times)
        stride = stride_s
        if max_windows and duration > window_s:
            stride = max(stride_s, (duration - window_s) / max(1, max_windows - 1))
        bounds = window_bounds(duration, window_s, stride)
        if with_whole_video:
            bounds.insert(0, (0.0, duration))
        return [PlannedClip(sample_indices(times, spec.num_frames, start=s, end=e), s, e) for s, e in bounds]

    return _read(source, spec, plan, limits)


__all__ = ["VideoSource", "read_clip", "read_views", "read_windows"]
