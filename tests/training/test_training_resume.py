"""Resuming a training run: where a run goes does not stop it resuming, and a run killed with SIGKILL
mid-epoch or during feature caching resumes to exactly an uninterrupted run's history and weights.
(kill -9 of one rank of a distributed run: test_distributed.py.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from actionrec.datasets.synth import generate_dataset
from actionrec.testing.runs import run_result

torch = pytest.importorskip("torch", reason="training and test models need the train extra (torch)")

from actionrec.training.config import TrainConfig  # noqa: E402

TINY = ["--frames", "4", "--image-size", "32", "--width-mult", "0.35", "--hidden-size", "32", "--batch-size", "4",
        "--dropout", "0.5"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "data"
    generate_dataset(root, clips_per_class=6, seed=3, width=64, height=48)
    return root


def train_command(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "actionrec.cli", "train", str(data), "--out", str(out), "--cache-dir", str(cache),
            *TINY, *extra]


def kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "the moment to kill never came"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def test_where_a_run_goes_does_not_stop_it_resuming():
    from actionrec.training.state import fingerprint

    base = dict(data_dir="d", out="o", frames=4, image_size=32)
    one = fingerprint(TrainConfig(**base), ["a", "b"])
    assert one == fingerprint(TrainConfig(**base, device="cpu", precision="fp32", workers=1, cache_dir="c"), ["a", "b"])
    assert one != fingerprint(TrainConfig(**base, lr=0.5), ["a", "b"])


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_equals_an_uninterrupted_run(dataset: Path, tmp_path: Path):
    epochs = ["--epochs", "4", "--backbone-weights", "none"]
    subprocess.run(train_command(dataset, tmp_path / "whole", tmp_path / "cache", *epochs), check=True,
                   capture_output=True, timeout=600)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(train_command(dataset, interrupted, tmp_path / "cache", *epochs),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def in_epoch_two() -> bool:
        history = interrupted / "history.json"
        if not history.exists():
            return False
        rows = json.loads(history.read_text())
        if len(rows) != 1:
            return False
        time.sleep(rows[0]["seconds"] * 0.4)  # well into the second epoch
        return True

    kill_when(process, in_epoch_two)
    assert len(json.loads((interrupted / "history.json").read_text())) < 4
    resumed = subprocess.run(train_command(dataset, interrupted, tmp_path / "cache", *epochs, "--resume"),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming after epoch" in resumed.stdout
    assert run_result(interrupted) == run_result(tmp_path / "whole")


@pytest.mark.slow
def test_resume_after_sigkill_during_feature_caching(dataset: Path, tmp_path: Path):
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    weights = tmp_path / "backbone.pth"
    backbone = mobilenet_v2(weights=None, width_mult=0.35).train()
    with torch.no_grad():
        backbone(torch.randn(4, 3, 32, 32))  # batch-norm statistics that fit real inputs
    torch.save(backbone.state_dict(), weights)
    frozen = ["--epochs", "2", "--backbone-weights", str(weights)]
    subprocess.run(train_command(dataset, tmp_path / "whole", tmp_path / "cache-whole", *frozen), check=True,
                   capture_output=True, timeout=600)
    cache = tmp_path / "cache-killed"
    process = subprocess.Popen(train_command(dataset, tmp_path / "killed", cache, *frozen),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(process, lambda: len(list(cache.glob("*/*.npy"))) >= 5)
    assert not (tmp_path / "killed" / "history.json").exists()
    for entry in cache.glob("*/[!.]*.npy"):  # what a reader takes: only complete files (a killed write
        np.load(entry)                       # may leave a hidden temporary file, never an entry)
    resumed = subprocess.run(train_command(dataset, tmp_path / "killed", cache, *frozen, "--resume"),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert run_result(tmp_path / "killed") == run_result(tmp_path / "whole")
