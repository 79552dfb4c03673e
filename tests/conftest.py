"""Shared fixtures: videos encoded on the fly, and the real sample clips when available."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from actionrec.synth import write_video


def numbered_frames(count: int, width: int = 64, height: int = 48) -> np.ndarray:
    """Frames whose brightness says their index (8 * index), so tests can tell which were sampled."""
    levels = (np.arange(count) * 8 % 256).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def frame_number(frame: np.ndarray) -> int:
    return int(round(float(frame.mean()) / 8))


def encode(frames: np.ndarray, container_format: str = "mp4", **options) -> bytes:
    buffer = io.BytesIO()
    write_video(frames, buffer, container_format=container_format, **options)
    return buffer.getvalue()


@pytest.fixture
def numbered_clip(tmp_path: Path) -> Path:
    """30 frames at 25 fps, frame i has brightness 8 * i."""
    path = tmp_path / "numbered.mp4"
    write_video(numbered_frames(30), path, fps=25)
    return path


@pytest.fixture
def sample_videos() -> Path:
    folder = os.environ.get("ACTIONREC_SAMPLE_VIDEOS")
    if not folder:
        pytest.skip("ACTIONREC_SAMPLE_VIDEOS is not set: no real-world sample clips to test on")
    path = Path(folder)
    if not path.is_dir():
        pytest.skip(f"ACTIONREC_SAMPLE_VIDEOS={folder} is not a folder")
    return path
