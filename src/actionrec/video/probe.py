"""Opening a video and reading what its packets say, without decoding: how many frames, when each
is shown, which are keyframes, how large, how long.

Container headers are not trusted: they over-report frame counts, and with variable frame
rates a frame's index is not its time. Every packet of the video stream is read instead, which
is cheap next to decoding, except where an MP4's own index of every frame holds up (see
`_indexed_packets`): reading that is several times cheaper still on a long video.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from actionrec.errors import (
    EmptyVideoError,
    FrameTooLargeError,
    NotAVideoError,
    NoVideoStreamError,
    RegionsError,
    UndecodableVideoError,
    VideoError,
    VideoNotFoundError,
    VideoTooLongError,
)
from actionrec.video.image_header import HEADER_BYTES, check_image_header
from actionrec.video.spec import DecodeLimits, VideoInfo, span

VideoSource = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO

# What counts as a video file where folders are searched (datasets, `actionrec predict FOLDER`).
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video_name(name: str) -> bool:
    """Whether a file of this name is taken for a video where folders are searched: a video
    extension, and not hidden (`._clip.mp4` is macOS metadata)."""
    return Path(name).suffix.lower() in VIDEO_EXTENSIONS and not Path(name).name.startswith(".")

# Containers whose demuxers seek by an index to a keyframe, with timestamps worth matching on.
SEEKABLE_CONTAINERS = ("mov", "mp4", "matroska", "webm")


@dataclass(frozen=True)
class VideoProbe:
    """What demuxing (without decoding) tells about a video stream."""

    info: VideoInfo  # as stored; the rotation is known once a frame is decoded
    times: np.ndarray  # presentation time (s) of each frame, sorted, relative to the first
    pts: np.ndarray | None  # the frames' presentation timestamps, sorted; None where unusable
    keyframe_pts: np.ndarray  # presentation timestamps of the keyframes, sorted
    name: str = "the video"  # how messages name the video
    # Where to seek for each keyframe: demuxers index by decode time (shifted to start with the
    # first presentation time), which runs behind the presentation time of frames with B-frames.
    keyframe_seek: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def seekable(self) -> bool:
        """Whether frames can be reached by seeking to keyframes and matched by timestamp."""
        container = self.info.container.split(",")
        return (self.pts is not None and len(self.keyframe_pts) > 1
                and any(name in SEEKABLE_CONTAINERS for name in container))


def open_video(source: VideoSource, name: str | None = None,
               max_pixels: int = DecodeLimits().max_pixels) -> av.container.InputContainer:
    """The video opened for reading, its decoders limited to frames of `max_pixels`."""
    name = name or describe(source)
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
    try:
        return open_container(file, max_pixels)
    except av.error.FFmpegError as exc:
        raise NotAVideoError(
            f"{name}: not a video file FFmpeg can read ({ffmpeg_reason(exc)}). "
            "Check that it is a complete video (MP4, AVI, MOV, MKV, WebM...)."
        ) from None


def open_container(file: object, max_pixels: int) -> av.container.InputContainer:
    """`av.open` with FFmpeg's own limit on every decoder's frame size, from probing on: a frame
    over it is refused before its memory is allocated. Without it, a 2 MB PNG that declares
    16000 x 16000 pixels takes gigabytes to decode before any check of ours could see its size."""
    limit = {"max_pixels": str(max_pixels)}
    container = av.open(file, mode="r", metadata_errors="ignore", options=limit)
    for stream in container.streams.video:
        if stream.codec_context is not None:
            stream.codec_context.options = dict(stream.codec_context.options) | limit
    return container


def _head(source: VideoSource) -> bytes:
    """The first bytes of a video given as bytes or a path (b"" for a file object, or no file)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:HEADER_BYTES])
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        with open(source, "rb") as file:
            return file.read(HEADER_BYTES)
    return b""


def ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def describe(source: VideoSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "the uploaded video"
    return getattr(source, "name", None) or "the video"


def probe(source: VideoSource, limits: DecodeLimits = DecodeLimits(), name: str | None = None) -> VideoProbe:
    """Demux the video stream (no decoding): frame count, times, keyframes, size, codec.

    `name` is how messages call the video (default: its path, or "the uploaded video" for bytes).
    Raises a `VideoError` subclass for anything wrong with the video.
    """
    name = name or describe(source)
    with decoder_failures(name):
        check_image_header(_head(source), limits.max_pixels, name)  # every read of a video starts here
        container = open_video(source, name, limits.max_pixels)
        try:
            return _probe_container(container, name, limits, _size(source))
        finally:
            container.close()


@contextmanager
def decoder_failures(name: str) -> Iterator[None]:
    """Any other error while reading a video (a damaged file can make PyAV or FFmpeg fail in ways
    nobody listed) is the video's problem: an UndecodableVideoError, never a traceback. Errors
    raised on purpose (a VideoError; a RegionsError from what was asked of the frames) pass as they are."""
    try:
        yield
    except (VideoError, RegionsError):
        raise
    except Exception as exc:
        raise UndecodableVideoError(f"{name}: the decoder failed on this file ({type(exc).__name__}: "
                                    f"{ffmpeg_reason(exc)}). It is probably damaged; re-encode it "
                                    "(e.g. `ffmpeg -i in.mp4 out.mp4`).") from exc


def _size(source: VideoSource) -> int | None:
    """The video's size in bytes, where it is bytes or a file; None for a file object."""
    if isinstance(source, memoryview):
        return source.nbytes
    if isinstance(source, (bytes, bytearray)):
        return len(source)
    if isinstance(source, (str, os.PathLike)):
        return Path(source).stat().st_size
    return None


def _probe_container(container: av.container.InputContainer, name: str, limits: DecodeLimits,
                     size: int | None = None) -> VideoProbe:
    stream = _video_stream(container, name, limits)
    demuxed, checked = _demuxed(container, stream), list[av.Packet]()
    packets = (_indexed_packets(container, stream, size, demuxed, checked)
               or _read_packets(itertools.chain(checked, demuxed), name))
    pts, times = _frame_times(packets, stream)
    duration = span(times)
    rate = _stream_rate(stream)
    fps = (packets.count - 1) / times[-1] if packets.count > 1 and times[-1] > 0 else rate
    # Half a frame of tolerance: a video of exactly the limit sums its frames to 600.0000000000001 s.
    if duration > limits.max_duration_s + 0.5 / max(fps, 1.0):
        raise _too_long(name, duration, limits)

    ctx = stream.codec_context
    info = VideoInfo(
        duration_s=round(duration, 3),
        fps=round(float(fps), 3),
        width=ctx.width or 0,
        height=ctx.height or 0,
        rotation=0,
        num_frames=packets.count,
        codec=ctx.name,
        container=container.format.name,
    )
    keyframes = sorted(packets.keyframes)
    keyframe_pts = np.asarray([pts for pts, _ in keyframes], dtype=np.int64)
    keyframe_seek = np.asarray([max(pts, dts + (packets.delay or 0)) for pts, dts in keyframes], dtype=np.int64)
    return VideoProbe(info, times, pts, keyframe_pts, name, keyframe_seek)


def _video_stream(container: av.container.InputContainer, name: str,
                  limits: DecodeLimits) -> av.video.stream.VideoStream:
    """The container's first video stream, once its headers show nothing to refuse it for."""
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        kind = container.format.name.removesuffix("_pipe")
        raise NotAVideoError(f"{name}: is a still image ({kind}), not a video. Send a video file.")
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise NoVideoStreamError(f"{name}: has no video stream (streams found: {kinds}).")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None:  # the container names a codec FFmpeg has no decoder for
        raise UndecodableVideoError(f"{name}: its video is in a format FFmpeg cannot decode. Re-encode it as "
                                    "H.264 MP4 (e.g. `ffmpeg -i in.mkv out.mp4`).")
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
    return stream


@dataclass
class _Packets:
    """What the packets of a video stream say about its frames."""

    count: int = 0  # frames shown
    pts: list[int] = field(default_factory=list)  # their presentation timestamps, where packets have them
    keyframes: list[tuple[int, int]] = field(default_factory=list)  # (pts, dts)
    delay: int | None = None  # presentation minus decode time of the first packet


def _read_packets(demuxed: Iterable[av.Packet], name: str) -> _Packets:
    """What the packets of a stream say; UndecodableVideoError when none holds a frame."""
    packets = _Packets()
    for packet in demuxed:
        if packet.pts is not None:
            if packets.delay is None and packet.dts is not None:
                packets.delay = max(0, packet.pts - packet.dts)
            if packet.is_keyframe:  # a place to seek to, even when its own frame is not shown
                packets.keyframes.append((packet.pts, packet.pts if packet.dts is None else packet.dts))
        if packet.is_discard:
            continue  # cut by an edit list (a trimmed MP4): decoded for the frames after it, never shown
        packets.count += 1
        if packet.pts is not None:
            packets.pts.append(packet.pts)
    if packets.count == 0:
        raise UndecodableVideoError(f"{name}: the video stream holds no frames.")
    return packets


# Packets demuxed to check an index against: more than any reordering delay, few enough to cost nothing.
_INDEX_CHECKED_PACKETS = 16


def _indexed_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                     size: int | None, demuxed: Iterator[av.Packet], checked: list[av.Packet]) -> _Packets | None:
    """What `_read_packets` finds, taken instead from the index an MP4 or MOV keeps of every frame
    (13 ms against 88 ms for the 15,000 frames of `benchmark`'s 10-minute video); None where the
    index is not to be trusted. The packets taken from `demuxed` to check it go to `checked`.

    The index gives each frame's decode time, size, place in the file and keyframe and edit-list
    flags, not its presentation time, so it is used only for streams whose frames are not
    reordered (no B-frames: most phones' H.264), whose presentation time is the decode time plus
    one fixed delay. The first packets must agree with it on all of that (a file without a list of
    sync frames calls every frame a keyframe); it must list every frame the header counts (a
    fragmented MP4's does not) and end within the file (a truncated one's does not). What the
    first packets cannot show, a delay that changes later in the stream, the seeking reader meets
    as timestamps it cannot find, and it reads from the start instead, with a warning."""
    if "mov" not in container.format.name.split(",") or stream.codec_context.has_b_frames or size is None:
        return None
    entries = [(entry.timestamp, entry.size, entry.pos, bool(entry.is_keyframe), bool(entry.is_discard))
               for entry in stream.index_entries]
    if not entries or len(entries) != stream.frames or max(pos + length for _, length, pos, _, _ in entries) > size:
        return None
    entries = [entry for entry in entries if entry[1] > 0]
    delays = set()
    for entry, packet in zip(entries[:_INDEX_CHECKED_PACKETS], demuxed):
        checked.append(packet)
        dts, length, _, is_keyframe, is_discard = entry
        if (packet.pts is None or packet.dts != dts or packet.size != length
                or bool(packet.is_keyframe) != is_keyframe or bool(packet.is_discard) != is_discard):
            return None
        delays.add(packet.pts - packet.dts)
    if len(delays) != 1 or len(checked) < min(len(entries), _INDEX_CHECKED_PACKETS):
        return None  # frames reordered after all, or a stream that ends before its index
    delay = delays.pop()
    # The rules of `_read_packets`, on plain tuples: passing 15,000 packet-like objects through it
    # instead took the probe from 13 to 19 ms.
    packets = _Packets(delay=max(0, delay))
    for dts, _, _, is_keyframe, is_discard in entries:
        if is_keyframe:
            packets.keyframes.append((dts + delay, dts))
        if not is_discard:
            packets.count += 1
            packets.pts.append(dts + delay)
    return packets if packets.count else None


def _demuxed(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.Packet]:
    """The stream's packets that hold data, until the container ends or breaks (a damaged one)."""
    try:
        for packet in container.demux(stream):
            if packet.size > 0:
                yield packet
    except av.error.FFmpegError:
        pass  # use the packets read so far; decoding will tell the rest


def _stream_rate(stream: av.video.stream.VideoStream) -> float:
    """The frame rate the stream declares, 25 when it declares none."""
    return float(stream.average_rate or stream.guessed_rate or 0) or 25.0


def _frame_times(packets: _Packets, stream: av.video.stream.VideoStream) -> tuple[np.ndarray | None, np.ndarray]:
    """(the frames' timestamps, sorted, or None where they cannot tell the frames apart; each frame's
    time in seconds from the first). Without a timestamp on every frame, times follow the frame rate."""
    time_base = float(stream.time_base) if stream.time_base else 0.0
    pts = None
    if len(packets.pts) == packets.count and time_base > 0:
        pts = np.sort(np.asarray(packets.pts, dtype=np.int64))
        times = (pts - pts[0]).astype(np.float64) * time_base
        if len(np.unique(pts)) < len(pts):
            pts = None  # frames that share a timestamp cannot be told apart by it
    else:
        times = np.arange(packets.count, dtype=np.float64) / _stream_rate(stream)
    return pts, times


def _header_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _too_long(name: str, duration: float, limits: DecodeLimits) -> VideoTooLongError:
    return VideoTooLongError(
        f"{name}: lasts {seconds(duration, limits.max_duration_s)}, longer than the limit of "
        f"{limits.max_duration_s:g} s. Cut it into shorter pieces or raise the limit."
    )


def seconds(value: float, limit: float) -> str:
    """`value` with as many decimals as it takes to differ from `limit` (600.04 s, not 600 s)."""
    for decimals in range(4):
        text = f"{value:.{decimals}f}"
        if float(text) != limit:
            return f"{text} s"
    return f"{value} s"
