"""Videos made on the fly for tests: frames that say their own index, clips of the synthetic actions,
several actions one after another, clips of one noisy colour (to teach), and a file FFmpeg has no
decoder for. No torch."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from actionrec.datasets.synth import render_clip
from actionrec.video.encode import write_video

LABELS = ("grow", "shrink", "brighten", "darken")  # make_untrained_model's default labels
COLOURS = {"red": (200, 40, 40), "blue": (40, 60, 200), "green": (40, 190, 60)}  # colour_clip's actions


def numbered_frames(count: int, width: int = 64, height: int = 48) -> np.ndarray:
    """Frames whose brightness says their index (8 * index), so tests can tell which were sampled."""
    levels = (np.arange(count) * 8 % 256).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def frame_number(frame: np.ndarray) -> int:
    """The index a frame of `numbered_frames` says (after decoding, to the nearest)."""
    return int(round(float(frame.mean()) / 8))


def encode(frames: np.ndarray, container_format: str = "mp4", **options) -> bytes:
    """`frames` as the bytes of a video file (`write_video`'s options)."""
    buffer = io.BytesIO()
    write_video(frames, buffer, container_format=container_format, **options)
    return buffer.getvalue()


def action_clip(label: str = "grow", seed: int = 1, num_frames: int = 50, fps: int = 25) -> bytes:
    """An MP4 clip of one synthetic action (`render_clip`), at its default size."""
    buffer = io.BytesIO()
    write_video(render_clip(label, np.random.default_rng(seed), num_frames=num_frames), buffer, fps,
                container_format="mp4")
    return buffer.getvalue()


def long_video(seconds: float, fps: int = 25, seed: int = 0, labels: Sequence[str] = LABELS) -> bytes:
    """Actions one after another (`labels` in turn, 2 s each at 25 fps), `seconds` long in all, as MP4."""
    rng = np.random.default_rng(seed)
    frames: list[np.ndarray] = []
    total = int(seconds * fps)
    while sum(len(f) for f in frames) < total:
        frames.append(render_clip(labels[len(frames) % len(labels)], rng, width=64, height=48, num_frames=50))
    buffer = io.BytesIO()
    write_video(np.concatenate(frames)[:total], buffer, fps, container_format="mp4", gop=50)
    return buffer.getvalue()


def video_without_a_decoder() -> bytes:
    """A Matroska file whose video names a codec FFmpeg has no decoder for."""
    data = encode(numbered_frames(10), container_format="matroska")
    at = data.index(b"V_MPEG4/ISO/AVC")
    return data[:at] + b"V_XXXXX/ISO/AVC" + data[at + 15:]


def colour_clip(path: Path, colour: tuple[int, int, int], seed: int, frames: int = 30) -> Path:
    """A 64x48 clip at 15 fps of one colour with per-pixel noise (seeded), written to `path`."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, np.int16)
    video = np.clip(base + rng.integers(-30, 30, (frames, 48, 64, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(video, path, 15.0)
    return path
