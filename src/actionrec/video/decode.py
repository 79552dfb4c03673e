"""Decoding with PyAV: the frames a plan picked, and nothing else, converted to model-ready RGB.

Only the picked frames are converted (RGB, the shorter side resized, the centre square cropped,
the display rotation applied). Where the container has an index and several keyframes, each
picked frame is reached from the keyframe before it (or by going on when the next one is in
the same group of pictures), so the cost grows with the number of picked frames, not with the
video's length; frames are matched by their timestamps, so they are exactly those a decode from
the start gives. A file whose index or timestamps do not hold up is read from the start
instead, with a warning. If the stream breaks part way, the clips are planned again over the
frames that did decode, as long as enough of them came out.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from actionrec.errors import FrameTooLargeError, NotAnImageError, RegionsError, UndecodableVideoError, VideoError
from actionrec.video.converting import converted_ahead
from actionrec.video.image_header import HEADER_BYTES, check_image_header
from actionrec.video.probe import (
    VideoProbe,
    VideoSource,
    decoder_failures,
    ffmpeg_reason,
    open_container,
    open_video,
    probe,
)
from actionrec.video.regions import RegionSpec, crop_input, displayed_rgb, model_square
from actionrec.video.spec import Clip, ClipSpec, DecodeLimits, PlannedClip, VideoInfo, sample_indices, span

# Plans the clips to take from a stream whose frames start at `times` (seconds, sorted).
Plan = Callable[[np.ndarray], list[PlannedClip]]
# What is kept of each picked frame, in place of `to_model_input` (e.g. the crops of its regions).
Convert = Callable[[av.VideoFrame], Any]


# --------------------------------------------------------------------------- decoding


def to_model_input(frame: av.VideoFrame, image_size: int, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """Resize the shorter side to image_size, crop the centre square, apply display rotation
    (`reformatter`: one kept for a stream's frames, see `model_square`)."""
    square = model_square(frame, image_size, reformatter)
    # Cropping the centre square commutes with quarter turns, so rotating the small crop is enough.
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    if quarter_turns:
        square = np.rot90(square, k=quarter_turns)
    return np.ascontiguousarray(square)


class FixedRegionCrops:
    """What a frame gives for a timeline per fixed region (a `Convert`): its model input, then each
    region's crop of it, model-ready: (regions + 1, S, S, 3). Picklable, for a decode worker."""

    def __init__(self, regions: RegionSpec, image_size: int) -> None:
        self.regions, self.image_size = regions, image_size

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = displayed_rgb(frame)
        boxes = self.regions.pixel_boxes(rgb.shape[1], rgb.shape[0])
        return np.stack([to_model_input(frame, self.image_size),
                         *(crop_input(rgb, box, self.image_size) for box in boxes)])


@dataclass
class DecodeOutcome:
    """How reading went, known once the frames have been taken."""

    decoded: int = 0  # frames from the start known to decode: where reading stopped, or all after seeking
    frames_decoded: int = 0  # all the frames the decoder produced, seeking or not: the work done
    broke: str | None = None  # why the stream broke, if it did
    rotation: int = 0
    warnings: list[str] = field(default_factory=list)


class _SeekFailed(Exception):
    """Seeking did not land where the index said, or timestamps did not match the probe's."""


def checked_model_input(frame: av.VideoFrame, image_size: int, limits: DecodeLimits, what: str,
                        hint: str = "") -> np.ndarray:
    """`to_model_input`, for a frame within the pixel limit; FrameTooLargeError otherwise."""
    if frame.width * frame.height > limits.max_pixels:
        raise FrameTooLargeError(f"{what} is {frame.width}x{frame.height}, larger than the limit of "
                                 f"{limits.max_pixels:,} pixels.{hint}")
    return to_model_input(frame, image_size)


def _frame_converter(image_size: int, limits: DecodeLimits, name: str, outcome: DecodeOutcome,
                     convert: Convert | None) -> Convert:
    """What each picked frame of one read goes through: `convert`, or the model input made with
    one scaler kept for the read's frames; FrameTooLargeError for a frame over the pixel limit."""
    reformatter = VideoReformatter()

    def converted(frame: av.VideoFrame) -> Any:
        outcome.rotation = int(frame.rotation or 0)
        if frame.width * frame.height > limits.max_pixels:
            checked_model_input(frame, image_size, limits, f"{name}: a frame")  # raises FrameTooLargeError
        return to_model_input(frame, image_size, reformatter) if convert is None else convert(frame)

    return converted


def read_frames(source: VideoSource, video: VideoProbe, indices: Iterable[int], image_size: int,
                limits: DecodeLimits, outcome: DecodeOutcome, *, seek: bool = True,
                convert: Convert | None = None) -> Iterator[tuple[int, Any]]:
    """(index, frame) for each wanted frame index, in increasing order, converted to RGB (or, with
    `convert`, what it makes of the decoded frame).

    Seeks when the file allows it (and `seek`); otherwise, or when seeking does not hold up,
    decodes from the start. Stops early where the stream breaks: `outcome` says how far it got.
    """
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return
    name = video.name
    converted = _frame_converter(image_size, limits, name, outcome, convert)
    if seek and video.seekable:
        done = -1
        try:
            for index, frame in converted_ahead(_read_seeking(source, video, wanted, limits, outcome), converted):
                done = index
                yield index, frame
            return
        except (VideoError, RegionsError):
            raise
        except Exception as exc:  # _SeekFailed, FFmpeg's errors, anything a damaged index provokes
            reason = str(exc) if isinstance(exc, _SeekFailed) else ffmpeg_reason(exc)
            outcome.warnings.append(f"seeking in this video did not work ({reason}); it was read from the start")
            wanted = [i for i in wanted if i > done]
    with decoder_failures(name):
        yield from converted_ahead(_read_sequential(source, wanted, name, limits, outcome), converted)


def _read_sequential(source: VideoSource, wanted: list[int], name: str, limits: DecodeLimits,
                     outcome: DecodeOutcome) -> Generator[tuple[int, av.VideoFrame], None, None]:
    """Decode from the start, handing out only the `wanted` frame indices; stop after the last one."""
    container = open_video(source, name, limits.max_pixels)
    targets = set(wanted)
    last = wanted[-1]
    count = 0
    try:
        for frame in container.decode(container.streams.video[0]):
            outcome.frames_decoded += 1
            if count in targets:
                yield count, frame
            count += 1
            if count > last:
                break
    except av.error.FFmpegError as exc:
        outcome.broke = ffmpeg_reason(exc)
    finally:
        outcome.decoded = count
        container.close()


def _read_seeking(source: VideoSource, video: VideoProbe, wanted: list[int], limits: DecodeLimits,
                  outcome: DecodeOutcome) -> Generator[tuple[int, av.VideoFrame], None, None]:
    """Reach each wanted frame from the keyframe before it, matching frames by timestamp."""
    assert video.pts is not None
    container = open_video(source, video.name, limits.max_pixels)
    try:
        stream = container.streams.video[0]
        frames: Iterator[av.VideoFrame] = iter(())
        position: int | None = None  # timestamp of the last frame the decoder gave
        for index in wanted:
            target = int(video.pts[index])
            nearest = int(np.searchsorted(video.keyframe_pts, target, side="right")) - 1
            if nearest < 0:
                raise _SeekFailed(f"frame {index} comes before the first keyframe")
            if position is None or video.keyframe_pts[nearest] > position:
                container.seek(int(video.keyframe_seek[nearest]), stream=stream, backward=True, any_frame=False)
                frames, position = _decoded(container, stream), None
            for frame in frames:
                outcome.frames_decoded += 1
                if frame.pts is None:
                    raise _SeekFailed("frames without timestamps")
                if position is None and frame.pts > target:
                    raise _SeekFailed(f"seeking for frame {index} landed after it")
                if position is not None and frame.pts <= position:
                    raise _SeekFailed("timestamps out of order")
                position = frame.pts
                if frame.pts == target:
                    yield index, frame
                    break
                if frame.pts > target:
                    raise _SeekFailed(f"no frame with the timestamp of frame {index}")
            else:
                raise _SeekFailed(f"the stream ended before frame {index}")
        outcome.decoded = len(video.times)
    finally:
        container.close()


def _decoded(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    for packet in container.demux(stream):
        yield from stream.decode(packet)


def displayed(info: VideoInfo, rotation: int) -> VideoInfo:
    """`info` as the video is displayed: a quarter turn swaps width and height."""
    width, height = (info.height, info.width) if rotation % 180 else (info.width, info.height)
    return replace(info, width=width, height=height, rotation=rotation)


def rereadable(source: VideoSource) -> VideoSource:
    """A file object is read several times (probe, decode): keep it in memory."""
    return source.read() if hasattr(source, "read") else source


def broken_stream(video: VideoProbe, outcome: DecodeOutcome, spec: ClipSpec, limits: DecodeLimits,
                   name: str) -> str:
    """The warning for a stream that broke part way; UndecodableVideoError if too little decoded."""
    usable = max(1, math.ceil(spec.num_frames * limits.min_usable_fraction))
    because = f" ({outcome.broke})" if outcome.broke else ""
    if outcome.decoded < min(usable, len(video.times)):
        raise UndecodableVideoError(
            f"{name}: only {outcome.decoded} of {video.info.num_frames} frames could be "
            f"decoded{because}; the file is damaged or truncated. Re-encode or re-download it."
        )
    return (f"the video stream broke after {outcome.decoded} of {video.info.num_frames} frames{because}; "
            "frames were taken from the part that decoded")


@dataclass
class PlannedRead:
    """What `read_planned` took: the planned clips, each picked frame (converted) by index, the
    frames' times, the video as displayed, and the warnings met."""

    clips: list[PlannedClip]
    frames: dict[int, Any]
    times: np.ndarray
    info: VideoInfo
    warnings: list[str]


def read_planned(source: VideoSource, spec: ClipSpec, plan: Plan, limits: DecodeLimits, name: str | None = None,
                 convert: Convert | None = None) -> PlannedRead:
    """Probe, plan one or more clips, and decode the frames they need (each once, through `convert`
    where given); where the stream breaks part way, plan again over the frames that decoded."""
    source = rereadable(source)
    video = probe(source, limits, name)
    name = video.name
    times = video.times
    warnings: list[str] = []
    for attempt in range(2):
        planned = plan(times)
        outcome = DecodeOutcome()
        frames = dict(read_frames(source, video, (i for clip in planned for i in clip.indices), spec.image_size,
                                  limits, outcome, seek=attempt == 0, convert=convert))
        warnings += outcome.warnings
        if all(int(i) in frames for clip in planned for i in clip.indices):
            break
        # Fewer frames came out than the packets promised: the stream is damaged or truncated.
        warnings.append(broken_stream(video, outcome, spec, limits, name))
        times = video.times[: outcome.decoded]
    else:
        raise UndecodableVideoError(f"{name}: decoding gave different results on each pass.")
    return PlannedRead(planned, frames, times, displayed(video.info, outcome.rotation), warnings)


def _read(source: VideoSource, spec: ClipSpec, plan: Plan, limits: DecodeLimits, name: str | None = None
          ) -> list[Clip]:
    """Probe, plan one or more clips, decode what they need, and return the clips."""
    read = read_planned(source, spec, plan, limits, name)
    return [
        Clip(
            frames=np.stack([read.frames[int(i)] for i in clip.indices]),
            frame_indices=[int(i) for i in clip.indices],
            frame_times=[round(float(read.times[i]), 3) for i in clip.indices],
            info=read.info,
            warnings=list(read.warnings),
            start_s=round(clip.start_s, 3),
            end_s=round(clip.end_s, 3),
        )
        for clip in read.clips
    ]


# --------------------------------------------------------------------------- the readers


def read_clip(
    source: VideoSource,
    spec: ClipSpec,
    *,
    rng: np.random.Generator | None = None,
    limits: DecodeLimits = DecodeLimits(),
    name: str | None = None,
) -> Clip:
    """Read `spec.num_frames` frames spread over the whole video.

    Segment centres by default; with `rng`, a random moment inside each segment (training).
    Raises a `VideoError` subclass for anything wrong with the video (`name`: how its messages
    call the video; default its path, or "the uploaded video" for bytes).
    """
    return _read(source, spec, whole_video_plan(spec, rng), limits, name)[0]


def whole_video_plan(spec: ClipSpec, rng: np.random.Generator | None = None) -> Plan:
    """The plan of `read_clip` (and of a prediction's clip): `spec.num_frames` frames spread over the
    whole video by the sampling rule, segment centres unless `rng` is given."""

    def plan(times: np.ndarray) -> list[PlannedClip]:
        return [PlannedClip(sample_indices(times, spec.num_frames, rng), 0.0, span(times))]

    return plan


def read_views(
    source: VideoSource,
    spec: ClipSpec,
    *,
    views: int,
    rng: np.random.Generator | None = None,
    limits: DecodeLimits = DecodeLimits(),
) -> list[Clip]:
    """Several temporal views of one video, read together.

    View 0 takes segment centres, exactly as `read_clip`; the others take random moments inside
    each segment (from `rng`, or a fixed seed).
    """
    rng = rng if rng is not None else np.random.default_rng(0)

    def plan(times: np.ndarray) -> list[PlannedClip]:
        return [PlannedClip(sample_indices(times, spec.num_frames, rng if view else None), 0.0, span(times))
                for view in range(views)]

    return _read(source, spec, plan, limits)


def read_image(data: bytes, image_size: int, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """A still image (JPEG, PNG, WebP...) as one model-ready frame: how live camera frames arrive."""
    hint = " Send smaller frames (640 wide is plenty)."
    check_image_header(data[:HEADER_BYTES], limits.max_pixels, "The camera frame", hint)
    try:
        with open_container(io.BytesIO(data), limits.max_pixels) as container:
            frame = next(container.decode(video=0))
    except Exception:  # FFmpeg's errors (a frame over the limit too), no stream, no frame
        raise NotAnImageError("The camera frame is not an image FFmpeg can read, or larger than the limit of "
                              f"{limits.max_pixels:,} pixels. Send each frame as a JPEG or PNG image.{hint}") from None
    with decoder_failures("the camera frame"):
        return checked_model_input(frame, image_size, limits, "The camera frame", hint)


__all__ = ["DecodeOutcome", "FixedRegionCrops", "PlannedRead", "checked_model_input", "read_clip", "read_frames",
           "read_image", "read_planned", "read_views", "to_model_input", "whole_video_plan"]
