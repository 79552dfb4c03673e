"""The synthetic dataset: clips of one shape that changes over time, written as real video files,
and the README that says what is drawn."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from actionrec.datasets import synth
from actionrec.video.encode import write_video


def small_clip(num_frames: int = 12, width: int = 64, height: int = 48) -> np.ndarray:
    return synth.render_clip("grow", np.random.default_rng(7), width, height, num_frames)


def decode(data: bytes | Path) -> tuple[list[av.VideoFrame], av.container.InputContainer]:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    container = av.open(source)
    frames = list(container.decode(video=0))
    return frames, container


def written(frames: np.ndarray, container_format: str = "mp4", **options) -> bytes:
    buffer = io.BytesIO()
    write_video(frames, buffer, container_format=container_format, **options)
    return buffer.getvalue()


# --- classes and rendering ------------------------------------------------------------


def test_classes_come_in_order_pairs():
    assert len(synth.CLASSES) >= 8
    assert len(set(synth.CLASSES)) == len(synth.CLASSES)
    assert len(synth.ORDER_PAIRS) >= 4
    paired = sorted(label for pair in synth.ORDER_PAIRS for label in pair)
    assert paired == sorted(synth.CLASSES)


@pytest.mark.parametrize("label", synth.CLASSES)
def test_render_clip_shape_and_duration(label):
    clip = synth.render_clip(label, np.random.default_rng(1))
    assert clip.dtype == np.uint8
    assert clip.shape[1:] == (96, 128, 3)
    assert synth.MIN_FRAMES <= len(clip) <= synth.MAX_FRAMES
    resized = synth.render_clip(label, np.random.default_rng(1), 80, 60, num_frames=30)
    assert resized.shape == (30, 60, 80, 3)


def test_render_clip_is_deterministic():
    first = synth.render_clip("warm_to_cool", np.random.default_rng(3))
    again = synth.render_clip("warm_to_cool", np.random.default_rng(3))
    other = synth.render_clip("warm_to_cool", np.random.default_rng(4))
    assert first.tobytes() == again.tobytes()
    assert first.shape != other.shape or not np.array_equal(first, other)


@pytest.mark.parametrize("pair", synth.ORDER_PAIRS)
def test_partner_class_is_the_same_clip_reversed_in_time(pair):
    drawn, reversed_partner = pair
    for seed in range(3):
        clip = synth.render_clip(drawn, np.random.default_rng(seed))
        partner = synth.render_clip(reversed_partner, np.random.default_rng(seed))
        np.testing.assert_array_equal(partner, clip[::-1])


def test_unknown_class_is_refused():
    with pytest.raises(ValueError, match="grow"):
        synth.render_clip("jump", np.random.default_rng(0))


def states(action: str, seed: int) -> dict[str, np.ndarray]:
    progress = np.linspace(0, 1, 40)
    return synth._changes(action, np.random.default_rng(seed), 96, progress)


@pytest.mark.parametrize("seed", range(6))
def test_each_action_changes_one_property_a_lot(seed):
    grow = states("grow", seed)
    assert grow["radius"][-1] > 2.5 * grow["radius"][0] and np.all(np.diff(grow["radius"]) > 0)
    brighten = states("brighten", seed)
    assert brighten["value"][-1] - brighten["value"][0] > 0.45 and np.all(np.diff(brighten["value"]) > 0)
    warm_to_cool = states("warm_to_cool", seed)
    start, end = warm_to_cool["hue"][0] % 1, warm_to_cool["hue"][-1] % 1
    assert (start < 0.09 or start > 0.94) and 0.45 < end < 0.71  # red/orange to cyan/blue
    widen = states("widen", seed)
    assert widen["aspect"][0] < 0.5 and widen["aspect"][-1] > 2.2
    for action, changed in (("grow", "radius"), ("brighten", "value"), ("widen", "aspect")):
        others = {k: v for k, v in states(action, seed).items() if k != changed}
        assert all(np.ptp(v) == 0 for v in others.values())  # nothing else changes


def test_rendered_object_grows():
    clip = synth.render_clip("grow", synth.clip_rng(0, "grow", 0), num_frames=30)
    changed = np.abs(clip.astype(int) - np.median(clip, axis=0)).sum(axis=-1) > 60
    assert changed[-1].sum() > 2 * changed[0].sum()


# --- dataset --------------------------------------------------------------------------


def generate_small(out_dir: Path, clips_per_class: int, **options) -> list[Path]:
    return synth.generate_dataset(out_dir, clips_per_class, width=64, height=48, **options)


def test_dataset_layout_and_readme(tmp_path):
    calls = []
    paths = generate_small(tmp_path, 2, seed=5, progress=lambda done, total: calls.append((done, total)))
    assert len(paths) == 2 * len(synth.CLASSES)
    assert calls[-1] == (len(paths), len(paths))
    for label in synth.CLASSES:
        names = sorted(p.name for p in (tmp_path / label).iterdir())
        assert names == [f"{label}_0000.mp4", f"{label}_0001.mp4"]
    readme = (tmp_path / "README.txt").read_text()
    assert "seed=5" in readme
    frames, container = decode(paths[0])
    with container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert (frames[0].width, frames[0].height) == (64, 48)
        assert synth.MIN_FRAMES <= len(frames) <= synth.MAX_FRAMES


def test_dataset_clips_do_not_depend_on_clips_per_class(tmp_path):
    few = generate_small(tmp_path / "few", 1)
    many = generate_small(tmp_path / "many", 2)
    for path in few:
        twin = tmp_path / "many" / path.parent.name / path.name
        assert twin in many
        a, container_a = decode(path)
        b, container_b = decode(twin)
        container_a.close()
        container_b.close()
        assert [f.to_ndarray().tobytes() for f in a] == [f.to_ndarray().tobytes() for f in b]


def test_dataset_generation_resumes_and_leaves_no_partial_files(tmp_path, monkeypatch):
    real_render = synth.render_clip
    rendered = []

    def render_then_fail(label, *args, **kwargs):
        if len(rendered) == 3:
            raise KeyboardInterrupt
        rendered.append(label)
        return real_render(label, *args, **kwargs)

    monkeypatch.setattr(synth, "render_clip", render_then_fail)
    with pytest.raises(KeyboardInterrupt):
        generate_small(tmp_path, 2)
    assert len(list(tmp_path.rglob("*.mp4"))) == 3

    kept = sorted(tmp_path.rglob("*.mp4"))[0]
    kept.write_bytes(b"kept as is")
    monkeypatch.setattr(synth, "render_clip", real_render)
    paths = generate_small(tmp_path, 2)
    assert len(paths) == 2 * len(synth.CLASSES)
    assert all(p.exists() for p in paths)
    assert kept.read_bytes() == b"kept as is"
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix not in (".mp4", ".txt")] == []


def test_dataset_with_other_parameters_is_refused(tmp_path):
    generate_small(tmp_path, 1, seed=0)
    with pytest.raises(ValueError, match="seed=0"):
        generate_small(tmp_path, 1, seed=1)


# --- write_video ----------------------------------------------------------------------


def test_write_video_to_path_round_trips(tmp_path):
    clip = small_clip(num_frames=20)
    path = tmp_path / "clip.mp4"
    write_video(clip, path, fps=25)
    frames, container = decode(path)
    with container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 25
        assert [float(f.time) for f in frames] == pytest.approx([i / 25 for i in range(20)])
    decoded = np.stack([f.to_ndarray(format="rgb24") for f in frames])
    assert decoded.shape == clip.shape
    assert np.abs(decoded.astype(int) - clip).mean() < 8


@pytest.mark.parametrize("container_format", ["mp4", "mov", "matroska", "avi"])
def test_write_video_to_file_object(container_format):
    frames, container = decode(written(small_clip(), container_format))
    with container:
        assert len(frames) == 12
        assert (frames[0].width, frames[0].height) == (64, 48)


def test_write_video_to_file_object_needs_a_container_format():
    with pytest.raises(ValueError, match="container_format"):
        write_video(small_clip(), io.BytesIO())


def test_write_video_pads_odd_sizes_to_even():
    clip = small_clip(width=65, height=49)
    frames, container = decode(written(clip))
    container.close()
    assert (frames[0].width, frames[0].height) == (66, 50)


def test_write_video_other_codec():
    frames, container = decode(written(small_clip(), "avi", codec="mpeg4"))
    with container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
        assert len(frames) == 12


@pytest.mark.parametrize("container_format", ["mp4", "matroska"])
def test_write_video_variable_frame_rate(container_format):
    pts_seconds = [0.0, 0.04, 0.2, 0.25, 0.7, 0.71, 1.5, 1.6, 1.64, 2.0, 2.1, 3.0]
    frames, container = decode(written(small_clip(), container_format, pts_seconds=pts_seconds))
    container.close()
    assert [float(f.time) for f in frames] == pytest.approx(pts_seconds, abs=1e-3)


def test_write_video_refuses_timestamps_avi_cannot_keep():
    with pytest.raises(ValueError, match="AVI"):
        written(small_clip(num_frames=3), "avi", pts_seconds=[0.0, 0.2, 0.3])


def test_write_video_refuses_unordered_timestamps():
    with pytest.raises(ValueError, match="increasing"):
        written(small_clip(num_frames=3), pts_seconds=[0.0, 0.2, 0.1])
    with pytest.raises(ValueError, match="3 frames"):
        written(small_clip(num_frames=3), pts_seconds=[0.0, 0.2])


@pytest.mark.parametrize("container_format", ["mp4", "mov", "matroska", "webm"])
@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_write_video_rotation_tag(container_format, rotation):
    codec = "libvpx-vp9" if container_format == "webm" else "h264"
    frames, container = decode(written(small_clip(), container_format, codec=codec, rotation=rotation))
    container.close()
    assert len(frames) == 12
    assert {f.rotation % 360 for f in frames} == {rotation % 360}
    # The pixels are stored unrotated; only the tag says how to show them.
    assert (frames[0].width, frames[0].height) == (64, 48)


def test_write_video_without_rotation_has_no_tag():
    frames, container = decode(written(small_clip()))
    container.close()
    assert frames[0].rotation == 0


def test_write_video_rotation_in_avi_is_refused_and_leaves_no_file(tmp_path):
    path = tmp_path / "clip.avi"
    with pytest.raises(NotImplementedError, match="mp4"):
        write_video(small_clip(), path, rotation=90)
    assert not path.exists()


@pytest.mark.parametrize("container_format", ["mp4", "matroska", "avi", "webm"])
def test_write_video_audio_track(container_format):
    codec = "libvpx-vp9" if container_format == "webm" else "h264"
    data = written(small_clip(num_frames=25), container_format, codec=codec, audio=True)
    with av.open(io.BytesIO(data)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "video"]
        kinds = [packet.stream.type for packet in container.demux() if packet.size]
    # Interleaved: audio packets appear among the video packets, not all after them.
    first_audio = kinds.index("audio")
    assert first_audio < kinds.count("video") // 2
    with av.open(io.BytesIO(data)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        rate = container.streams.audio[0].sample_rate
    assert samples / rate == pytest.approx(1.0, abs=0.1)  # 25 frames at 25 fps
    frames, container = decode(data)
    container.close()
    assert len(frames) == 25


@pytest.mark.parametrize("bframes", [True, False])
def test_write_video_bframes_reorder_decoding(bframes):
    data = written(small_clip(num_frames=20), bframes=bframes)
    with av.open(io.BytesIO(data)) as container:
        packet_pts = [p.pts for p in container.demux(video=0) if p.pts is not None]
    reordered = packet_pts != sorted(packet_pts)
    assert reordered == bframes
    frames, container = decode(data)
    container.close()
    assert len(frames) == 20
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    has_b = any(f.pict_type == av.video.frame.PictureType.B for f in frames)
    assert has_b == bframes


def test_write_video_refuses_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        write_video(np.zeros((2, 8, 8, 3), np.float32), io.BytesIO(), container_format="mp4")
    with pytest.raises(ValueError, match="empty"):
        write_video(np.zeros((0, 8, 8, 3), np.uint8), io.BytesIO(), container_format="mp4")


def test_synthetic_readme_describes_what_is_drawn(tmp_path: Path):
    synth.generate_dataset(tmp_path, clips_per_class=0)
    readme = (tmp_path / "README.txt").read_text()
    for word in (*synth.SHAPES, *synth.BACKGROUNDS, *synth.CLASSES):
        assert word.replace("checker", "checkerboard") in readme, word
    for gone in ("wedge", "pac-man", "left/right", "clock hand"):
        assert gone not in readme
