"""Shared fixtures: videos encoded on the fly, and the real sample clips when available."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from actionrec.testing.loadtest import free_port  # noqa: F401  (tests import it from here)
from actionrec.video.encode import write_video


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


@contextmanager
def serve_command(options: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`actionrec serve` as a real process on a free port, with no ACTIONREC_* variables but `env`;
    yields its URL once /readyz answers and stops it at the end."""
    port = free_port()
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ACTIONREC_")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "actionrec.cli", "serve", *options, "--host", "127.0.0.1",
                                    "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=environment | (env or {}))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{log_path.read_text(errors='replace')}")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def imagenet_checkpoint() -> Path:
    """torchvision's ImageNet MobileNetV2 checkpoint where torch.hub looks for it (`make test` copies
    it from ../shared/weights into a TORCH_HOME of the tests' own), so `imagenet` runs offline."""
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        pytest.skip(f"no ImageNet MobileNetV2 checkpoint at {path} (`make test` puts ../shared/weights' copy "
                    "there; on a machine with internet the first `--backbone-weights imagenet` run downloads it)")
    return path


@pytest.fixture(scope="session")
def real_clips() -> Path:
    """Real UCF101 clips laid out as UCF101 is (Class/v_Class_gNN_cNN.avi): ACTIONREC_REAL_CLIPS."""
    folder = os.environ.get("ACTIONREC_REAL_CLIPS")
    if not folder:
        pytest.skip("ACTIONREC_REAL_CLIPS is not set: no real UCF101 clips to test on (`make test` sets it to "
                    "../shared/real/ucf101-6 where that exists)")
    path = Path(folder)
    if not path.is_dir() or not any(path.glob("*/*.avi")):
        pytest.skip(f"ACTIONREC_REAL_CLIPS={folder} holds no Class/*.avi clips")
    return path
