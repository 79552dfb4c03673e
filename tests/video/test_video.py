"""Decoding: sampling, bytes and paths, rotation, short, variable-rate and broken clips."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from actionrec.errors import (
    EmptyVideoError,
    FrameTooLargeError,
    NotAVideoError,
    NoVideoStreamError,
    UndecodableVideoError,
    VideoNotFoundError,
    VideoTooLongError,
)
from actionrec.testing.media import encode, frame_number, numbered_frames, video_without_a_decoder
from actionrec.video import ClipSpec, DecodeLimits, Timeline, decode, read_clip, read_views, sample_indices, spec
from actionrec.video.converting import converted_ahead

SPEC = ClipSpec(num_frames=8, image_size=32)


# --------------------------------------------------------------------------- sampling rule


def test_centre_sampling_takes_the_middle_of_equal_segments():
    times = np.arange(100) / 25
    assert sample_indices(times, 4).tolist() == [12, 37, 62, 87]  # floor((k + 0.5) * 100 / 4)


def test_random_sampling_stays_inside_each_segment():
    times = np.arange(100) / 25
    for seed in range(20):
        picked = sample_indices(times, 4, rng=np.random.default_rng(seed))
        assert all(25 * k <= i < 25 * (k + 1) for k, i in enumerate(picked))


def test_short_clips_repeat_frames_in_order():
    picked = sample_indices(np.arange(3) / 25, 8)
    assert len(picked) == 8 and sorted(picked) == picked.tolist() and set(picked) == {0, 1, 2}


def test_variable_frame_rate_samples_by_time_not_index():
    # 10 frames in the first second, then one frame a second: by index, 5 of 10 picks would fall
    # in the first second; by time, one does.
    times = np.concatenate([np.arange(10) / 10, 1 + np.arange(9)])
    picked = sample_indices(times, 10)
    assert picked.tolist() == [5, 10, 11, 12, 13, 14, 15, 16, 17, 18]


def test_timeline_windows_cover_the_samples_and_end_with_the_last():
    timeline = Timeline(interval_s=1.0, frames_per_window=4, stride=2)
    assert timeline.sample_times(10.4).tolist() == [i + 0.5 for i in range(10)]
    assert timeline.windows(10) == [0, 2, 4, 6]
    assert timeline.windows(11) == [0, 2, 4, 6, 7]
    assert timeline.sample_times(3.9).size == 0 and timeline.windows(3) == []  # shorter than one window


def test_timeline_windows_are_sampled_like_training_clips():
    timeline = Timeline.for_clips(num_frames=8, clip_duration_s=2.0)
    samples = timeline.sample_times(60.0)
    for first in timeline.windows(len(samples)):
        start = first * timeline.interval_s
        window = samples[first : first + 8]
        np.testing.assert_allclose(window, spec.segment_targets(start, start + timeline.window_s, 8))


def test_a_live_window_is_a_timeline_window_however_often_it_answers():
    timeline = Timeline.for_clips(num_frames=4, clip_duration_s=3.0)  # a sample every 0.75 s
    assert timeline.live(1.0) == spec.LiveSampling(0.75, 1, 4)
    live = timeline.live(0.5)  # twice as many samples, every other one read
    assert (live.step_s, live.every, live.span) == (0.375, 2, 7)
    window = live.window(np.arange(20) * live.step_s)
    assert window == [4.875, 5.625, 6.375, 7.125] and window[-1] - window[0] == pytest.approx(3 * timeline.interval_s)
    with pytest.raises(ValueError, match="more than 0 s"):
        timeline.live(0)


def test_reads_from_path_bytes_and_file_object_alike(numbered_clip):
    from_path = read_clip(numbered_clip, SPEC)
    data = numbered_clip.read_bytes()
    from_bytes = read_clip(data, SPEC)
    from_file = read_clip(io.BytesIO(data), SPEC)
    assert from_path.frames.shape == (8, 32, 32, 3) and from_path.frames.dtype == np.uint8
    np.testing.assert_array_equal(from_path.frames, from_bytes.frames)
    np.testing.assert_array_equal(from_path.frames, from_file.frames)
    info = from_path.info
    assert (info.num_frames, info.fps, info.width, info.height) == (30, 25.0, 64, 48)
    assert info.duration_s == pytest.approx(1.2)


def test_the_sampled_frames_are_the_ones_returned(numbered_clip):
    clip = read_clip(numbered_clip, SPEC)
    expected = sample_indices(np.arange(30) / 25, 8).tolist()
    assert clip.frame_indices == expected
    assert [frame_number(f) for f in clip.frames] == expected


def test_only_sampled_frames_are_converted(numbered_clip, monkeypatch):
    calls = []
    original = decode.to_model_input
    monkeypatch.setattr(decode, "to_model_input",
                        lambda frame, size, *rest: calls.append(1) or original(frame, size, *rest))
    read_clip(numbered_clip, ClipSpec(4, 32))
    assert len(calls) == 4


def test_frames_convert_on_a_thread_in_order_and_a_failure_comes_after_the_frames_before_it():
    seen: list[int] = []

    def frames():
        for index in range(10):
            seen.append(index)
            if index == 7:
                raise RuntimeError("the decoder broke")
            yield index, index

    threads: set[str] = set()

    def convert(value: int) -> int:
        threads.add(threading.current_thread().name)
        return value * 10

    converted = converted_ahead(frames(), convert, depth=2)
    handed: list[tuple[int, int]] = []
    with pytest.raises(RuntimeError, match="broke"):
        for pair in converted:
            handed.append(pair)
    assert handed == [(i, i * 10) for i in range(7)]
    assert threading.current_thread().name not in threads  # the conversions ran beside the decoding


def test_a_reader_stopped_early_closes_its_frames_and_a_conversion_error_reaches_it():
    closed = []

    def frames():
        try:
            yield from ((i, i) for i in range(100))
        finally:
            closed.append(True)

    converted = converted_ahead(frames(), lambda value: value, depth=4)
    assert [next(converted) for _ in range(3)] == [(0, 0), (1, 1), (2, 2)]
    converted.close()
    assert closed == [True]

    def refuse(value: int) -> int:
        if value == 5:
            raise FrameTooLargeError("too large")
        return value

    with pytest.raises(FrameTooLargeError):
        list(converted_ahead(((i, i) for i in range(10)), refuse))


def test_a_scaler_kept_for_a_stream_gives_the_pixels_each_frame_s_own_gives():
    import av
    from av.video.reformatter import VideoReformatter

    from actionrec.video.regions import model_square

    data = encode(np.random.default_rng(0).integers(0, 256, (12, 64, 96, 3), dtype=np.uint8))  # detail to scale
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(video=0))
    kept = VideoReformatter()
    for frame in frames:
        for size in (32, 40):
            np.testing.assert_array_equal(model_square(frame, size, kept), model_square(frame, size))


def test_training_views_are_random_and_reproducible(numbered_clip):
    views = read_views(numbered_clip, SPEC, views=3, rng=np.random.default_rng(1))
    again = read_views(numbered_clip, SPEC, views=3, rng=np.random.default_rng(1))
    assert views[0].frame_indices == read_clip(numbered_clip, SPEC).frame_indices  # view 0: centres
    assert views[1].frame_indices != views[0].frame_indices
    assert [v.frame_indices for v in views] == [v.frame_indices for v in again]


def test_b_frames_and_audio_do_not_change_what_is_read(tmp_path):
    frames = numbered_frames(30)
    plain = read_clip(encode(frames), SPEC)
    tricky = read_clip(encode(frames, bframes=True, audio=True), SPEC)
    assert [frame_number(f) for f in tricky.frames] == [frame_number(f) for f in plain.frames]


def test_variable_frame_rate_file_is_sampled_by_time():
    # 20 frames in the first 0.5 s, then 10 frames one every 0.5 s.
    pts = [i / 40 for i in range(20)] + [0.5 + 0.5 * i for i in range(10)]
    clip = read_clip(encode(numbered_frames(30), pts_seconds=pts), ClipSpec(5, 32))
    assert clip.info.duration_s == pytest.approx(5.5, abs=0.05)
    assert all(i >= 20 for i in clip.frame_indices[1:])


def test_frames_are_resized_and_centre_cropped(tmp_path):
    frames = np.zeros((4, 60, 120, 3), np.uint8)
    frames[:, :, :30] = 255  # white left quarter is cropped away by the centre square
    clip = read_clip(encode(frames), ClipSpec(2, 30))
    assert clip.frames.shape == (2, 30, 30, 3)
    assert clip.frames.mean() < 10


def test_display_rotation_is_applied():
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    frames[:, :24, :, 0] = 255  # red top half
    clip = read_clip(encode(frames, container_format="mp4", rotation=90), ClipSpec(2, 32))
    assert clip.info.rotation == 90 and (clip.info.width, clip.info.height) == (48, 64)
    red = clip.frames[0, :, :, 0].astype(float)
    # Rotated 90 degrees anticlockwise for display, the top edge becomes the left edge.
    assert red[:, :12].mean() > 200 and red[:, -12:].mean() < 50


# --------------------------------------------------------------------------- bad input


def test_empty_input():
    with pytest.raises(EmptyVideoError):
        read_clip(b"", SPEC)


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(EmptyVideoError, match="empty.mp4"):
        read_clip(tmp_path / "empty.mp4", SPEC)


def test_missing_file(tmp_path):
    with pytest.raises(VideoNotFoundError, match="nope.mp4"):
        read_clip(tmp_path / "nope.mp4", SPEC)


def test_not_a_video():
    with pytest.raises(NotAVideoError, match="not a video"):
        read_clip(b"this is a text file, not a video" * 100, SPEC)


def test_still_image_is_not_a_video():
    import PIL.Image

    buffer = io.BytesIO()
    PIL.Image.new("RGB", (64, 48), "red").save(buffer, format="PNG")
    with pytest.raises(NotAVideoError, match="still image"):
        read_clip(buffer.getvalue(), SPEC)


def test_audio_only_file_has_no_video_stream():
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(NoVideoStreamError, match="no video stream"):
        read_clip(buffer.getvalue(), SPEC)


def test_truncated_file_is_an_error_or_a_partial_read():
    data = encode(numbered_frames(60, 128, 96))
    with pytest.raises((NotAVideoError, UndecodableVideoError)):
        read_clip(data[:200], SPEC)  # the header is cut: nothing to read


def test_stream_broken_half_way_uses_what_decoded():
    data = bytearray(encode(numbered_frames(60, 128, 96), container_format="matroska"))
    cut = bytes(data[: len(data) * 2 // 3])  # the later frames are simply missing
    clip = read_clip(cut, SPEC)
    assert clip.frames.shape == (8, 32, 32, 3)
    assert max(clip.frame_indices) < 60


def test_frame_size_limit():
    data = encode(numbered_frames(4, 128, 96))
    with pytest.raises(FrameTooLargeError, match="128x96"):
        read_clip(data, SPEC, limits=DecodeLimits(max_pixels=100 * 100))


def test_duration_limit():
    data = encode(numbered_frames(50), fps=10)
    with pytest.raises(VideoTooLongError, match="limit of 2 s"):
        read_clip(data, SPEC, limits=DecodeLimits(max_duration_s=2))


def test_a_duration_just_over_the_limit_says_by_how_much():
    data = encode(numbered_frames(51), fps=25)  # 2.04 s
    with pytest.raises(VideoTooLongError, match=r"lasts 2\.04 s, longer than the limit of 2 s"):
        read_clip(data, ClipSpec(4, 32), limits=DecodeLimits(max_duration_s=2))


def test_a_video_no_decoder_can_read_is_a_typed_error():
    with pytest.raises(UndecodableVideoError, match="format FFmpeg cannot decode"):
        read_clip(video_without_a_decoder(), ClipSpec(4, 32))


# --------------------------------------------------------------------------- real-world clips


def test_ucf101_style_xvid_avi(sample_videos):
    clip = read_clip(sample_videos / "ucf101_format_xvid.avi", ClipSpec(16, 112))
    assert clip.info.num_frames == 164 and clip.info.fps == 25 and clip.info.codec == "mpeg4"
    # AVI timestamps are unusable here; indices must still spread evenly over the clip.
    assert clip.frame_indices == sample_indices(np.arange(164) / 25, 16).tolist()
    assert clip.frames.std() > 10


def test_phone_rotation_tag(sample_videos):
    rotated = read_clip(sample_videos / "rotated_90.mov", SPEC)
    upright = read_clip(sample_videos / "rotated_0.mov", SPEC)
    assert rotated.info.rotation == -90 and (rotated.info.width, rotated.info.height) == (320, 568)
    assert upright.info.rotation == 0 and (upright.info.width, upright.info.height) == (568, 320)
    assert rotated.info.num_frames == 3 and rotated.frames.shape[0] == 8


def test_corrupted_stream_gives_the_frames_that_decode(sample_videos):
    clip = read_clip(sample_videos / "corrupted_h264.mp4", SPEC)
    assert clip.warnings and "28 of 50" in clip.warnings[0]
    assert max(clip.frame_indices) < 28


def test_reordered_timestamps(sample_videos):
    clip = read_clip(sample_videos / "unordered_pts.mov", SPEC)
    assert clip.info.num_frames == 4 and clip.frame_indices == [0, 0, 1, 1, 2, 2, 3, 3]
    assert clip.frame_times == sorted(clip.frame_times)
