"""Seeking to the sampled frames gives exactly the frames a decode from the start gives, with less
work, on every kind of stream the reader meets; where seeking does not hold up, it reads from
the start instead and says so."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest

from actionrec.video import ClipSpec, DecodeLimits, probe, read_clip
from actionrec.video import decode as decode_module
from actionrec.video.decode import DecodeOutcome, read_frames
from actionrec.video.encode import write_video
from actionrec.video.probe import VideoProbe


def textured_frames(count: int, width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """Frames that all differ (a drifting gradient plus noise), so a wrong frame cannot pass."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, None, :, None]
    drift = np.arange(count, dtype=np.float32)[:, None, None, None] * 0.7
    noise = rng.normal(0, 12, (count, height, width, 3)).astype(np.float32)
    return np.clip(ramp + drift + noise, 0, 255).astype(np.uint8)


def encoded(container_format: str = "mp4", count: int = 150, **options) -> bytes:
    buffer = io.BytesIO()
    write_video(textured_frames(count), buffer, 25, container_format=container_format, **options)
    return buffer.getvalue()


STREAMS = {
    "h264, B-frames": dict(gop=12, bframes=True),
    "h264, open GOPs": dict(gop=12, bframes=True, open_gop=True),
    "h264, no B-frames": dict(gop=10),
    "matroska": dict(container_format="matroska", gop=15, bframes=True),
    "mpeg4 part 2": dict(codec="mpeg4", gop=12),
    "variable frame rate": dict(gop=12, bframes=True,
                                pts_seconds=np.cumsum(np.random.default_rng(1).uniform(0.01, 0.09, 150)).tolist()),
}
WANTED = ([5, 40, 41, 90, 149], list(range(0, 150, 7)), [149], [0, 1, 2], [12, 24, 36])


def both_ways(data: bytes | Path, wanted: list[int]) -> tuple[dict, dict, DecodeOutcome, DecodeOutcome]:
    video = probe(data)
    seeking, sequential = DecodeOutcome(), DecodeOutcome()
    sought = dict(read_frames(data, video, wanted, 32, DecodeLimits(), seeking, seek=True))
    read = dict(read_frames(data, video, wanted, 32, DecodeLimits(), sequential, seek=False))
    return sought, read, seeking, sequential


def assert_same(sought: dict, read: dict) -> None:
    assert list(sought) == list(read)
    for index in read:
        np.testing.assert_array_equal(sought[index], read[index], err_msg=f"frame {index}")


def clips_both_ways(data: bytes | Path, monkeypatch: pytest.MonkeyPatch, spec: ClipSpec = ClipSpec(8, 32)):
    """read_clip with seeking, then with every video taken as unseekable (read from the start)."""
    sought = read_clip(data, spec)
    monkeypatch.setattr(VideoProbe, "seekable", property(lambda self: False))
    return sought, read_clip(data, spec)


@pytest.mark.parametrize("kind", STREAMS)
def test_seeking_gives_the_frames_a_decode_from_the_start_gives(kind: str):
    data = encoded(**STREAMS[kind])
    video = probe(data)
    assert video.seekable and len(video.keyframe_pts) > 5, kind
    for wanted in WANTED:
        sought, read, seeking, sequential = both_ways(data, wanted)
        assert_same(sought, read)
        assert not seeking.warnings
        assert seeking.frames_decoded <= sequential.frames_decoded
    # Sampled as a prediction samples a long video, far fewer frames are decoded.
    _, _, seeking, sequential = both_ways(data, [10, 70, 140])
    assert seeking.frames_decoded < sequential.frames_decoded / 2


def test_whole_clips_read_by_seeking_match_clips_read_from_the_start(monkeypatch):
    sought, read = clips_both_ways(encoded(gop=12, bframes=True), monkeypatch)
    assert sought.frame_indices == read.frame_indices and sought.frame_times == read.frame_times
    np.testing.assert_array_equal(sought.frames, read.frames)


def test_a_broken_index_falls_back_to_reading_from_the_start(monkeypatch):
    data = encoded(gop=12, bframes=True)
    real_probe = decode_module.probe

    def probe_with_wrong_timestamps(*args, **kwargs) -> VideoProbe:
        video = real_probe(*args, **kwargs)
        return dataclasses.replace(video, pts=video.pts + 1)

    monkeypatch.setattr(decode_module, "probe", probe_with_wrong_timestamps)
    clip = read_clip(data, ClipSpec(8, 32))
    assert any("read from the start" in warning for warning in clip.warnings)
    monkeypatch.setattr(decode_module, "probe", real_probe)
    monkeypatch.setattr(VideoProbe, "seekable", property(lambda self: False))
    np.testing.assert_array_equal(clip.frames, read_clip(data, ClipSpec(8, 32)).frames)


def test_a_damaged_stream_reads_the_same_with_or_without_seeking(monkeypatch):
    data = bytearray(encoded(gop=25, count=200))
    middle = len(data) * 3 // 5
    data[middle : middle + 4000] = bytes(4000)  # wipe out part of a group of pictures
    sought, read = clips_both_ways(bytes(data), monkeypatch)
    assert sought.frame_indices == read.frame_indices
    np.testing.assert_array_equal(sought.frames, read.frames)


def test_containers_without_an_index_are_read_from_the_start():
    assert not probe(encoded("avi", gop=12)).seekable


@pytest.mark.parametrize("name", ["ucf101_format_xvid.avi", "corrupted_h264.mp4", "rotated_90.mov", "rotated_0.mov",
                                  "unordered_pts.mov"])
def test_real_clips_read_the_same_with_or_without_seeking(sample_videos: Path, name: str, monkeypatch):
    sought, read = clips_both_ways(sample_videos / name, monkeypatch)
    assert sought.frame_indices == read.frame_indices and sought.warnings == read.warnings
    np.testing.assert_array_equal(sought.frames, read.frames)


def trimmed(data: bytes, cut: int = 5) -> bytes:
    """The file as a phone's trim or `ffmpeg -ss -c copy` leaves it: the first `cut` frames stay in
    the stream (the frames after them need them) but an edit list hides them."""
    import av

    source = av.open(io.BytesIO(data))
    stream = source.streams.video[0]
    packets = [packet for packet in source.demux(stream) if packet.size]
    step = sorted(p.pts for p in packets)[1] - min(p.pts for p in packets)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        target = out.add_stream_from_template(stream)
        for packet in packets:
            packet.pts -= cut * step
            packet.dts -= cut * step
            packet.stream = target
            out.mux(packet)
    source.close()
    return buffer.getvalue()


def test_trimmed_files_count_and_read_only_the_frames_shown(monkeypatch):
    data = trimmed(encoded(gop=12, bframes=True))
    video = probe(data)
    assert video.info.num_frames == 145 and video.seekable
    for wanted in ([0, 1, 2, 3, 4, 5, 6, 100, 144], list(range(0, 145, 9))):
        sought, read, seeking, _ = both_ways(data, wanted)
        assert_same(sought, read)
        assert not seeking.warnings and len(read) == len(wanted)
    sought, read = clips_both_ways(data, monkeypatch, ClipSpec(16, 32))
    assert not sought.warnings and not read.warnings  # no false "the stream broke"
    np.testing.assert_array_equal(sought.frames, read.frames)


def remuxed(data: bytes, path: Path, shift_pts: int = 0, **options: str) -> bytes:
    """The same packets written again as MP4 with the muxer's `options` (`movflags`), each shown
    `shift_pts` ticks after it is decoded."""
    import av

    with av.open(io.BytesIO(data)) as source, av.open(str(path), "w", format="mp4", options=options) as out:
        stream = source.streams.video[0]
        target = out.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.size:
                packet.pts += shift_pts
                packet.stream = target
                out.mux(packet)
    return path.read_bytes()


def without_sync_frames(data: bytes) -> bytes:
    """The MP4 with its list of sync frames (`stss`) blanked out: by the format every frame is then
    one, though the stream's own keyframes are the usual few."""
    at = data.find(b"stss")
    return data[:at] + b"free" + data[at + 4:]


def probed_both_ways(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[VideoProbe, VideoProbe, bool]:
    """(the probe as it runs, the probe reading every packet, whether the first used the index)."""
    import importlib

    probe_module = importlib.import_module("actionrec.video.probe")
    indexed = probe_module._indexed_packets
    used: list[bool] = []

    def watched(*args, **kwargs):
        packets = indexed(*args, **kwargs)
        used.append(packets is not None)
        return packets

    monkeypatch.setattr(probe_module, "_indexed_packets", watched)
    fast = probe(data)
    monkeypatch.setattr(probe_module, "_indexed_packets", lambda *args, **kwargs: None)
    full = probe(data)
    monkeypatch.setattr(probe_module, "_indexed_packets", indexed)
    return fast, full, bool(used and used[0])


VFR = np.cumsum(np.random.default_rng(2).uniform(0.01, 0.09, 150)).tolist()
INDEXED = {  # (how the file is made, whether its index can stand in for reading every packet)
    "h264, no B-frames": (lambda tmp: encoded(gop=10), True),
    "mpeg4 part 2": (lambda tmp: encoded(codec="mpeg4", gop=12), True),
    "variable frame rate, no B-frames": (lambda tmp: encoded(gop=12, pts_seconds=VFR), True),
    "trimmed by an edit list": (lambda tmp: trimmed(encoded(gop=10)), True),
    "shown a fixed delay after decoding":
        (lambda tmp: remuxed(encoded(gop=10), tmp / "delayed.mp4", shift_pts=1024), True),
    "h264, B-frames": (lambda tmp: encoded(gop=12, bframes=True), False),
    "no list of sync frames (every frame a keyframe, says the index)":
        (lambda tmp: without_sync_frames(encoded(gop=10)), False),
    "fragmented":
        (lambda tmp: remuxed(encoded(gop=10), tmp / "fragmented.mp4", movflags="frag_keyframe+empty_moov"), False),
    "truncated, its index first":
        (lambda tmp: remuxed(encoded(gop=10), tmp / "whole.mp4", movflags="faststart")[:150_000], False),
}


@pytest.mark.parametrize("kind", INDEXED)
def test_an_mp4_index_is_read_only_where_it_says_what_every_packet_says(kind: str, tmp_path: Path, monkeypatch):
    make, trusted = INDEXED[kind]
    data = make(tmp_path)
    fast, full, used_index = probed_both_ways(data, monkeypatch)
    assert used_index == trusted
    assert fast.info == full.info
    for field_name in ("times", "pts", "keyframe_pts", "keyframe_seek"):
        np.testing.assert_array_equal(getattr(fast, field_name), getattr(full, field_name), err_msg=field_name)
    wanted = [0, 3, 50, 51, fast.info.num_frames - 1] if fast.info.num_frames > 60 else [0, 3]
    sought, read, seeking, _ = both_ways(data, wanted)
    assert_same(sought, read)
    assert not seeking.warnings or kind.startswith("truncated")  # "the stream broke", with or without the index
