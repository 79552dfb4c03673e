"""DistributedDataParallel runs on the gloo backend (torch.distributed.run): two processes against one,
kill -9 of one rank then resume, and decoding on the fly in place of a frame cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from actionrec.testing.processes import run_checked
from actionrec.testing.runs import run_result

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")

TINY = ["--frames", "4", "--image-size", "32", "--width-mult", "0.35", "--hidden-size", "32", "--batch-size", "4"]


@pytest.fixture(scope="module")
def dataset(synthetic_dataset: Path) -> Path:
    return synthetic_dataset


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random MobileNetV2 weights with batch-norm statistics that fit real inputs: a frozen backbone."""
    from torchvision.models import mobilenet_v2

    path = tmp_path_factory.mktemp("weights") / "backbone.pth"
    model = mobilenet_v2(weights=None, width_mult=0.35).train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    torch.save(model.state_dict(), path)
    return path


def train_command(data: Path, out: Path, cache: Path, *extra: str, processes: int = 1) -> list[str]:
    start = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] \
        if processes > 1 else [sys.executable]
    return [*start, "-m", "actionrec", "train", str(data), "--out", str(out), "--cache-dir", str(cache),
            *TINY, "--workers", "1", *extra]


@pytest.mark.slow
def test_two_processes_on_gloo_match_one_process(dataset: Path, backbone: Path, tmp_path: Path):
    """Each rank trains on its half of every batch, weighed so that DDP's average is the whole batch's
    gradient: with dropout off, two processes follow one within float rounding (1e-4 on losses and
    accuracies, 1e-4 on every weight)."""
    from safetensors.numpy import load_file

    frozen = ["--epochs", "3", "--dropout", "0", "--backbone-weights", str(backbone)]
    run_checked(train_command(dataset, tmp_path / "one", tmp_path / "cache", *frozen))
    two = run_checked(train_command(dataset, tmp_path / "two", tmp_path / "cache", *frozen, processes=2))
    assert two.stdout.count("Training on cpu (fp32, 2 processes)") == 1  # rank 0 alone speaks

    one_history = json.loads((tmp_path / "one" / "history.json").read_text())
    two_history = json.loads((tmp_path / "two" / "history.json").read_text())
    for a, b in zip(one_history, two_history, strict=True):
        for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert a[name] == pytest.approx(b[name], abs=1e-4), (a["epoch"], name)
    one, two_weights = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" /
                                                                                     "model.safetensors")
    assert max(float(np.abs(one[name] - two_weights[name]).max()) for name in one) < 1e-4
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["runtime"] == {"device": "cpu", "precision": "fp32", "processes": 2}
    exported = subprocess.run([sys.executable, "-m", "actionrec", "export", str(tmp_path / "two")],
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr


@pytest.mark.slow
def test_kill_9_of_one_rank_leaves_a_run_that_resumes_to_the_same_result(dataset: Path, tmp_path: Path):
    epochs = ["--epochs", "4", "--backbone-weights", "none", "--dropout", "0.5"]
    run_checked(train_command(dataset, tmp_path / "whole", tmp_path / "cache", *epochs, processes=2))
    interrupted = tmp_path / "interrupted"
    launcher = subprocess.Popen(train_command(dataset, interrupted, tmp_path / "cache", *epochs, processes=2),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while True:
        assert launcher.poll() is None, "training ended before a rank could be killed"
        assert time.monotonic() < deadline
        history = interrupted / "history.json"
        if history.exists() and len(rows := json.loads(history.read_text())) == 1:
            time.sleep(rows[0]["seconds"] * 0.4)  # into the second epoch
            break
        time.sleep(0.01)
    ranks = _children(launcher.pid)
    assert len(ranks) == 2
    os.kill(ranks[-1], signal.SIGKILL)
    assert launcher.wait(120) != 0
    assert len(json.loads((interrupted / "history.json").read_text())) < 4

    resumed = run_checked(train_command(dataset, interrupted, tmp_path / "cache", *epochs, "--resume", processes=2))
    assert "Resuming after epoch" in resumed.stdout
    assert run_result(interrupted) == run_result(tmp_path / "whole")


def _children(pid: int) -> list[int]:
    return sorted(int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                  for child in (task / "children").read_text().split())


@pytest.mark.slow
def test_decoding_on_the_fly_trains_without_a_frame_cache(dataset: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    result = run_checked(train_command(dataset, tmp_path / "fly", cache, "--epochs", "2", "--backbone-weights", "none",
                               "--decode-on-the-fly", processes=2))
    assert "Caching training clips" not in result.stdout
    assert len([folder for folder in cache.iterdir() if folder.is_dir()]) == 1  # the validation clips only
    assert json.loads((tmp_path / "fly" / "config.json").read_text())["train"]["decode_on_the_fly"] is True
