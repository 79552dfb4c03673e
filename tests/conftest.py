"""Shared fixtures: videos encoded on the fly, an untrained model, a synthetic dataset, and the real
sample clips when available. Plain helpers live in `actionrec.testing` (media, processes, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from actionrec.testing.media import LABELS, numbered_frames
from actionrec.video.encode import write_video


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


@pytest.fixture(scope="session")
def weizmann_clips() -> Path:
    """Real Weizmann clips, `<action>/<actor>_<action>.avi`: ACTIONREC_WEIZMANN_CLIPS."""
    folder = os.environ.get("ACTIONREC_WEIZMANN_CLIPS")
    if not folder:
        pytest.skip("ACTIONREC_WEIZMANN_CLIPS is not set: no Weizmann clips to test on (`make test` sets it to "
                    "../shared/real/weizmann-7 where that exists)")
    path = Path(folder)
    if not path.is_dir() or not any(path.glob("*/*_*.avi")):
        pytest.skip(f"ACTIONREC_WEIZMANN_CLIPS={folder} holds no <action>/<actor>_<action>.avi clips")
    return path


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make_untrained_model` with its defaults (4 frames of 32 pixels, labels LABELS): a real model file
    whose answers mean nothing. Skips without the train extra (torch)."""
    pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("untrained") / "model.onnx", labels=LABELS)


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder tree of clips (`clips/<action>/*.mp4`, 2 of each synthetic action), with a file that is
    not a video and one that claims to be (`clips/grow/broken.mp4`)."""
    from actionrec.datasets.synth import generate_dataset

    root = tmp_path_factory.mktemp("videos")
    generate_dataset(root / "clips", clips_per_class=2, seed=4, width=64, height=48)
    (root / "clips" / "notes.txt").write_text("not a video, and not picked up from a folder")
    (root / "clips" / "grow" / "broken.mp4").write_bytes(b"not a video at all")
    return root


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic dataset, 6 clips of each action (seed 5, 64x48), for training tests."""
    from actionrec.datasets.synth import generate_dataset

    root = tmp_path_factory.mktemp("scale") / "data"
    generate_dataset(root, clips_per_class=6, seed=5, width=64, height=48)
    return root


# Where a test module does not define its own: the untrained model, and a 2-second clip of "grow".
@pytest.fixture(scope="session")
def model_path(untrained_model: Path) -> Path:
    return untrained_model


@pytest.fixture(scope="session")
def clip() -> bytes:
    from actionrec.testing.media import action_clip

    return action_clip("grow", seed=1, num_frames=50)
