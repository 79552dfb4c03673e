"""Writing videos with PyAV: the synthetic dataset's clips and every video fixture the tests make.

`write_video` encodes RGB frames to a real file (or file object) and can add what real footage
has and decoders trip over: variable frame timing, a display-rotation tag, an audio track,
B-frames.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

# Containers whose FFmpeg muxer writes the display matrix (rotation) of a video stream.
_ROTATION_CONTAINERS = frozenset({"mp4", "mov", "matroska", "webm"})
# Divides common frame and millisecond durations; mpeg4 allows no denominator above 65535.
_PTS_TIME_BASE = Fraction(1, 48000)
_AUDIO_RATE = 16000
_AUDIO_CHUNK = 1024
_TONE_HZ = 440.0



def _even_sized(frames: np.ndarray) -> np.ndarray:
    """Pad odd widths/heights by repeating the last column/row (yuv420p needs even sizes)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


class _Tone:
    """A mono 440 Hz tone muxed just ahead of the picture, so the muxer interleaves the two."""

    def __init__(self, container: av.container.OutputContainer, end_seconds: float) -> None:
        self.container = container
        self.stream = container.add_stream("libopus" if container.format.name == "webm" else "aac",
                                           rate=_AUDIO_RATE)
        self.stream.layout = "mono"
        self.total = round(end_seconds * _AUDIO_RATE)
        self.written = 0

    def write_until(self, seconds: float) -> None:
        until = min(self.total, round(seconds * _AUDIO_RATE))
        while self.written < until:
            count = min(_AUDIO_CHUNK, self.total - self.written)
            t = (self.written + np.arange(count)) / _AUDIO_RATE
            samples = (0.2 * np.sin(2 * np.pi * _TONE_HZ * t)).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            chunk.sample_rate = _AUDIO_RATE
            chunk.pts = self.written
            chunk.time_base = Fraction(1, _AUDIO_RATE)
            self.container.mux(self.stream.encode(chunk))
            self.written += count

    def finish(self) -> None:
        self.container.mux(self.stream.encode(None))


def _timestamps(count: int, fps: float, pts_seconds: Sequence[float] | None) -> tuple[Fraction, list[int]]:
    """(time base, presentation timestamp of each frame in it)."""
    if pts_seconds is None:
        return 1 / Fraction(fps).limit_denominator(1001), list(range(count))
    if len(pts_seconds) != count:
        raise ValueError(f"pts_seconds has {len(pts_seconds)} entries for {count} frames")
    pts = [round(float(t) / _PTS_TIME_BASE) for t in pts_seconds]
    if pts[0] < 0 or any(b <= a for a, b in zip(pts, pts[1:])):
        raise ValueError("pts_seconds must be non-negative and strictly increasing")
    return _PTS_TIME_BASE, pts


def _add_video_stream(container: av.container.OutputContainer, codec: str, frame_rate: Fraction,
                      time_base: Fraction, width: int, height: int, bframes: bool,
                      rotation: int | None, gop: int | None, open_gop: bool) -> av.video.stream.VideoStream:
    video = container.add_stream(codec, rate=frame_rate)
    if not isinstance(video, av.video.stream.VideoStream):
        raise ValueError(f"codec {codec!r} is not a video codec")
    video.width, video.height = width, height
    supported = [f.name for f in (video.codec_context.codec.video_formats or [])]
    video.pix_fmt = "yuv420p" if not supported or "yuv420p" in supported else supported[0]
    video.codec_context.time_base = time_base
    video.time_base = time_base
    max_b_frames = 2 if bframes else 0
    if video.codec_context.name == "libx264":
        options: dict[str, object] = {"preset": "ultrafast", "crf": "20", "bf": str(max_b_frames)}
        # Without b-adapt=0 x264 may decide that no frame is worth a B-frame.
        x264 = (["b-adapt=0"] if bframes else []) + (["open-gop=1"] if open_gop else [])
        if x264:
            options["x264-params"] = ":".join(x264)
        if gop is not None:
            options["g"] = str(gop)
        video.options = options
    else:
        video.codec_context.max_b_frames = max_b_frames
        if gop is not None:
            video.codec_context.gop_size = gop
    if rotation is not None:
        video.set_display_rotation(rotation)
    return video


def write_video(frames: np.ndarray, dest: str | os.PathLike | BinaryIO, fps: float = 25.0, *,
                container_format: str | None = None, codec: str = "h264",
                pts_seconds: Sequence[float] | None = None, rotation: int | None = None,
                audio: bool = False, bframes: bool = False, gop: int | None = None,
                open_gop: bool = False) -> None:
    """Encode (T, H, W, 3) uint8 RGB `frames` to a video file with PyAV.

    dest: a path (container guessed from its extension unless `container_format` is given) or
        a writable binary file object, which needs `container_format` ("mp4", "mov", "avi",
        "matroska", ...).
    codec: encoder name; "h264" is libx264. Pixels are stored as yuv420p where the encoder
        supports it, so odd sizes are padded by one row/column.
    pts_seconds: presentation time of each frame, for variable frame rate clips; otherwise
        frame i is shown at i / fps.
    rotation: display rotation written as the stream's display matrix, in degrees
        counter-clockwise: the value PyAV reports back as ``VideoFrame.rotation``. A phone held
        upright typically tags its clips -90 (the legacy ``rotate=90`` tag). Only mp4, mov,
        matroska and webm can store it.
    audio: add a mono 440 Hz tone (AAC; Opus in webm) as long as the video, interleaved with it.
    bframes: let the encoder use B-frames, so decode order differs from presentation order.
    gop: at most this many frames from one keyframe to the next (the encoder's default if None).
    open_gop: let B-frames before a keyframe (in display order) refer to the group before it
        (libx264 only, with `bframes`): seeking to such a keyframe cannot decode them.
    """
    frames = np.asarray(frames)
    _check_frames(frames, fps)
    is_path = isinstance(dest, (str, os.PathLike))
    if not is_path and container_format is None:
        raise ValueError("writing to a file object needs container_format, e.g. 'mp4' or 'matroska'")

    frame_rate = Fraction(fps).limit_denominator(1001)
    time_base, pts = _timestamps(len(frames), fps, pts_seconds)
    frame_duration = float(1 / frame_rate)
    frames = _even_sized(frames)
    try:
        with av.open(dest, mode="w", format=container_format) as container:
            _check_container_keeps(container.format.name, rotation, pts_seconds)
            video = _add_video_stream(container, codec, frame_rate, time_base, frames.shape[2], frames.shape[1],
                                      bframes, rotation, gop, open_gop)
            tone = _Tone(container, float(pts[-1] * time_base) + frame_duration) if audio else None
            _encode_frames(container, video, frames, pts, time_base, frame_duration, tone)
    except BaseException:
        if isinstance(dest, (str, os.PathLike)):
            Path(dest).unlink(missing_ok=True)
        raise


def _check_frames(frames: np.ndarray, fps: float) -> None:
    """ValueError unless `frames` is a non-empty (T, H, W, 3) uint8 array and `fps` positive."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 RGB array, got shape "
                         f"{frames.shape} dtype {frames.dtype}")
    if len(frames) == 0:
        raise ValueError("frames is empty: a video needs at least one frame")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")


def _check_container_keeps(format_name: str, rotation: int | None, pts_seconds: Sequence[float] | None) -> None:
    """An error unless the container can store the rotation tag and the frame times asked for."""
    if rotation is not None and format_name not in _ROTATION_CONTAINERS:
        raise NotImplementedError(
            f"the {format_name!r} container cannot store a rotation tag; "
            f"use one of: {', '.join(sorted(_ROTATION_CONTAINERS))}")
    if pts_seconds is not None and format_name == "avi":
        raise ValueError("AVI has no per-frame timestamps, so pts_seconds cannot be kept; "
                         "use mp4, mov or matroska")


def _encode_frames(container: av.container.OutputContainer, video: av.video.stream.VideoStream,
                   frames: np.ndarray, pts: list[int], time_base: Fraction, frame_duration: float,
                   tone: _Tone | None) -> None:
    """Every frame encoded and muxed at its timestamp (the tone, if any, kept just ahead), then the
    encoders flushed."""
    for image, frame_pts in zip(frames, pts):
        if tone is not None:
            tone.write_until(float(frame_pts * time_base) + frame_duration)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = frame_pts
        frame.time_base = time_base
        container.mux(video.encode(frame))
    container.mux(video.encode(None))
    if tone is not None:
        tone.finish()
