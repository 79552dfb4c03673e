"""Where training runs: device and precision choice (the CUDA path as far as a CPU can check it), the
gradient scaler and autocast each precision gets, and both checked before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")

from actionrec.errors import TrainingError  # noqa: E402
from actionrec.training import devices  # noqa: E402
from actionrec.training.config import TrainConfig  # noqa: E402

TINY = ["--frames", "4", "--image-size", "32", "--width-mult", "0.35", "--hidden-size", "32", "--batch-size", "4"]


@pytest.fixture(scope="module")
def dataset(synthetic_dataset: Path) -> Path:
    return synthetic_dataset


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)


def test_auto_takes_the_gpu_of_this_process_rank(two_gpus):
    assert devices.choose_device("auto") == torch.device("cuda:0")
    assert devices.choose_device("auto", local_rank=1) == torch.device("cuda:1")
    assert devices.choose_device("cuda", local_rank=1) == torch.device("cuda:1")
    assert devices.choose_device("cuda:0", local_rank=1) == torch.device("cuda:0")
    assert devices.choose_device("cpu") == torch.device("cpu")
    with pytest.raises(TrainingError, match="only 2 GPU"):
        devices.choose_device("cuda:2")


def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.choose_device("auto") == torch.device("cpu")
    with pytest.raises(TrainingError, match="sees no GPU.*--device cpu"):
        devices.choose_device("cuda")


def test_precision_bf16_where_the_gpu_has_it_else_fp16_with_a_scaler(two_gpus, monkeypatch: pytest.MonkeyPatch):
    gpu, cpu = torch.device("cuda:0"), torch.device("cpu")
    assert devices.choose_precision("auto", gpu) == "bf16"
    assert devices.choose_precision("fp32", gpu) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert devices.choose_precision("auto", gpu) == "fp16"
    with pytest.raises(TrainingError, match="does not support bfloat16"):
        devices.choose_precision("bf16", gpu)
    assert devices.choose_precision("auto", cpu) == "fp32"
    with pytest.raises(TrainingError, match="needs a GPU"):
        devices.choose_precision("fp16", cpu)


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_only_fp16_scales_gradients_and_fp32_runs_without_autocast():
    with pytest.warns(UserWarning, match="CUDA is not available") if not torch.cuda.is_available() else \
            _nothing():
        fp16 = devices.Runtime(torch.device("cuda:0"), "fp16").scaler()
    assert fp16.is_enabled() == torch.cuda.is_available()  # GradScaler itself turns off without CUDA
    assert not devices.Runtime(torch.device("cuda:0"), "bf16").scaler().is_enabled()
    assert not devices.Runtime().scaler().is_enabled()
    assert isinstance(devices.Runtime(torch.device("cuda:0"), "bf16").autocast(), torch.autocast)
    assert not isinstance(devices.Runtime().autocast(), torch.autocast)


def _nothing():
    from contextlib import nullcontext

    return nullcontext()


def test_device_and_precision_are_checked_before_anything_runs(dataset: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from actionrec.cli import app

    wrong = CliRunner().invoke(app, ["train", str(dataset), "--out", str(tmp_path / "r"), "--precision", "fp8"])
    assert wrong.exit_code == 2 and "fp8" in wrong.output
    with pytest.raises(ValueError, match="--device must be"):
        TrainConfig(data_dir="d", out="o", device="gpu")
    if not torch.cuda.is_available():
        result = subprocess.run([sys.executable, "-m", "actionrec", "train", str(dataset), "--out", str(tmp_path / "r"),
                                 "--device", "cuda", *TINY], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "sees no GPU" in result.stderr and "--device cpu" in result.stderr
