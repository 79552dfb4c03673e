"""Training where the hardware is: device and precision choice (the CUDA path as far as a CPU can
check it), batches streamed from the cache, decoding in worker processes, and DistributedDataParallel
runs on the gloo backend: two processes against one, and resume after kill -9 of a rank."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from actionrec.datasets import Sample
from actionrec.datasets.synth import generate_dataset
from tests.test_faults import run_result

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")

from actionrec.errors import TrainingError  # noqa: E402
from actionrec.training import runtime as runtimes  # noqa: E402
from actionrec.training.cache import ClipCache  # noqa: E402
from actionrec.training.config import TrainConfig  # noqa: E402
from actionrec.training.data import CachedViews, Shard, epoch_batches, loader  # noqa: E402

TINY = ["--frames", "4", "--image-size", "32", "--width-mult", "0.35", "--hidden-size", "32", "--batch-size", "4"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scale") / "data"
    generate_dataset(root, clips_per_class=6, seed=5, width=64, height=48)
    return root


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


# --------------------------------------------------------------------------- device and precision


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)


def test_auto_takes_the_gpu_of_this_process_rank(two_gpus):
    assert runtimes.choose_device("auto") == torch.device("cuda:0")
    assert runtimes.choose_device("auto", local_rank=1) == torch.device("cuda:1")
    assert runtimes.choose_device("cuda", local_rank=1) == torch.device("cuda:1")
    assert runtimes.choose_device("cuda:0", local_rank=1) == torch.device("cuda:0")
    assert runtimes.choose_device("cpu") == torch.device("cpu")
    with pytest.raises(TrainingError, match="only 2 GPU"):
        runtimes.choose_device("cuda:2")


def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtimes.choose_device("auto") == torch.device("cpu")
    with pytest.raises(TrainingError, match="sees no GPU.*--device cpu"):
        runtimes.choose_device("cuda")


def test_precision_bf16_where_the_gpu_has_it_else_fp16_with_a_scaler(two_gpus, monkeypatch: pytest.MonkeyPatch):
    gpu, cpu = torch.device("cuda:0"), torch.device("cpu")
    assert runtimes.choose_precision("auto", gpu) == "bf16"
    assert runtimes.choose_precision("fp32", gpu) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert runtimes.choose_precision("auto", gpu) == "fp16"
    with pytest.raises(TrainingError, match="does not support bfloat16"):
        runtimes.choose_precision("bf16", gpu)
    assert runtimes.choose_precision("auto", cpu) == "fp32"
    with pytest.raises(TrainingError, match="needs a GPU"):
        runtimes.choose_precision("fp16", cpu)


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_only_fp16_scales_gradients_and_fp32_runs_without_autocast():
    with pytest.warns(UserWarning, match="CUDA is not available") if not torch.cuda.is_available() else \
            _nothing():
        fp16 = runtimes.Runtime(torch.device("cuda:0"), "fp16").scaler()
    assert fp16.is_enabled() == torch.cuda.is_available()  # GradScaler itself turns off without CUDA
    assert not runtimes.Runtime(torch.device("cuda:0"), "bf16").scaler().is_enabled()
    assert not runtimes.Runtime().scaler().is_enabled()
    assert isinstance(runtimes.Runtime(torch.device("cuda:0"), "bf16").autocast(), torch.autocast)
    assert not isinstance(runtimes.Runtime().autocast(), torch.autocast)


def _nothing():
    from contextlib import nullcontext

    return nullcontext()


def test_where_a_run_goes_does_not_stop_it_resuming():
    from actionrec.training.train import _fingerprint

    base = dict(data_dir="d", out="o", frames=4, image_size=32)
    one = _fingerprint(TrainConfig(**base), ["a", "b"])
    assert one == _fingerprint(TrainConfig(**base, device="cpu", precision="fp32", workers=1, cache_dir="c"), ["a", "b"])
    assert one != _fingerprint(TrainConfig(**base, lr=0.5), ["a", "b"])


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


# --------------------------------------------------------------------------- streamed batches


def test_batches_stream_from_the_cache_files_without_holding_the_split(tmp_path: Path):
    """An epoch over 240 cached clips (56 MB) holds a few batches at a time, not the split."""
    clips, views, shape = 240, 2, (8, 64, 64, 3)
    cache = ClipCache(tmp_path / "cache", {"test": "stream"})
    rng = np.random.default_rng(0)
    samples = []
    for index in range(clips):
        video = tmp_path / f"clip{index:03d}.mp4"
        video.write_bytes(b"not read: the cache has it")
        cache.put(video, rng.integers(0, 256, (views, *shape), dtype=np.uint8))
        samples.append(Sample(video, index % 3))
    split_bytes = clips * views * int(np.prod(shape))
    keys = [(index, index % views) for index in range(clips)]
    batches = [part for part, _ in epoch_batches(keys, 8, Shard())]

    tracemalloc.start()
    try:
        seen = 0
        for arrays, labels in loader(CachedViews(cache, samples), batches, workers=0, pin_memory=False):
            assert arrays.shape == (8, *shape)
            seen += len(labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == clips
    assert peak < split_bytes / 10, f"peak {peak / 2**20:.1f} MB for a {split_bytes / 2**20:.0f} MB split"

    # Loader worker processes read ahead and give the same batches in the same order.
    read_alone = [a.clone() for a, _ in loader(CachedViews(cache, samples), batches[:6], 0, False)]
    read_ahead = [a for a, _ in loader(CachedViews(cache, samples), batches[:6], 2, False)]
    assert all(torch.equal(a, b) for a, b in zip(read_alone, read_ahead))


def test_each_rank_gets_its_share_of_every_global_batch():
    keys = [(index, 0) for index in range(10)]
    shards = [epoch_batches(keys, 4, Shard(rank, 3)) for rank in range(3)]
    assert [size for _, size in shards[0]] == [4, 4, 2]
    for step in range(3):
        taken = [key for shard in shards for key in shard[step][0] if shard[step][1]]
        assert sorted(taken) == keys[step * 4 : step * 4 + 4]
    assert shards[2][2] == ([(8, 0)], 0)  # nothing left for rank 2 in the last batch: a key weighed 0


def test_a_clip_that_kills_its_decoding_process_is_skipped_and_named(dataset: Path, tmp_path: Path):
    from actionrec.training.features import _decoded
    from actionrec.training.views import ViewDecoder
    from actionrec.video import ClipSpec
    from tests.faults import DecoderThatCrashes

    videos = sorted(dataset.rglob("*.mp4"))[:5]
    poison = tmp_path / "poison.mp4"
    poison.write_bytes(b"CRASH" + videos[0].read_bytes())
    decode = DecoderThatCrashes(ViewDecoder(ClipSpec(4, 32), 1, 0, False))
    outcomes = {video: (frames, error) for video, frames, error in _decoded([*videos[:2], poison, *videos[2:]],
                                                                             decode, workers=2)}
    assert len(outcomes) == 6
    assert outcomes[poison][0] is None and "died" in outcomes[poison][1]
    assert all(outcomes[video][0].shape == (1, 4, 32, 32, 3) for video in videos)


# --------------------------------------------------------------------------- several processes


def train_command(data: Path, out: Path, cache: Path, *extra: str, processes: int = 1) -> list[str]:
    start = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] \
        if processes > 1 else [sys.executable]
    return [*start, "-m", "actionrec", "train", str(data), "--out", str(out), "--cache-dir", str(cache),
            *TINY, "--workers", "1", *extra]


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_processes_on_gloo_match_one_process(dataset: Path, backbone: Path, tmp_path: Path):
    """Each rank trains on its half of every batch, weighed so that DDP's average is the whole batch's
    gradient: with dropout off, two processes follow one within float rounding (1e-4 on losses and
    accuracies, 1e-4 on every weight)."""
    from safetensors.numpy import load_file

    frozen = ["--epochs", "3", "--dropout", "0", "--backbone-weights", str(backbone)]
    run(train_command(dataset, tmp_path / "one", tmp_path / "cache", *frozen))
    two = run(train_command(dataset, tmp_path / "two", tmp_path / "cache", *frozen, processes=2))
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
    run(train_command(dataset, tmp_path / "whole", tmp_path / "cache", *epochs, processes=2))
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

    resumed = run(train_command(dataset, interrupted, tmp_path / "cache", *epochs, "--resume", processes=2))
    assert "Resuming after epoch" in resumed.stdout
    assert run_result(interrupted) == run_result(tmp_path / "whole")


def _children(pid: int) -> list[int]:
    return sorted(int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                  for child in (task / "children").read_text().split())


@pytest.mark.slow
def test_decoding_on_the_fly_trains_without_a_frame_cache(dataset: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    result = run(train_command(dataset, tmp_path / "fly", cache, "--epochs", "2", "--backbone-weights", "none",
                               "--decode-on-the-fly", processes=2))
    assert "Caching training clips" not in result.stdout
    assert len([folder for folder in cache.iterdir() if folder.is_dir()]) == 1  # the validation clips only
    assert json.loads((tmp_path / "fly" / "config.json").read_text())["train"]["decode_on_the_fly"] is True


def test_shifts_depend_on_the_clip_and_epoch_not_on_the_batch():
    from actionrec.training.data import shift_clips

    frames = torch.arange(2 * 3 * 16 * 16 * 3, dtype=torch.int64).reshape(2, 3, 16, 16, 3).to(torch.uint8)
    together = shift_clips(frames, [5, 9], seed=0, epoch=1, share=0.125)
    alone = shift_clips(frames[1:], [9], seed=0, epoch=1, share=0.125)
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together, shift_clips(frames, [5, 9], seed=0, epoch=2, share=0.125))
    assert torch.equal(shift_clips(frames, [5, 9], seed=0, epoch=1, share=0.0), frames)
    # All frames of a clip move alike: the difference between frames is kept.
    assert torch.equal(together[0, 1].int() - together[0, 0].int(), frames[0, 1].int() - frames[0, 0].int())


# --------------------------------------------------------------------------- benchmark-train


def benchmark_command(data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "actionrec", "benchmark-train", str(data), "--frames", "4", "--image-size", "32",
            "--width-mult", "0.35", "--batch-size", "4", "--clips", "8", "--steps", "2", "--workers", "1",
            "--json", *extra]


@pytest.mark.slow
def test_benchmark_train_reports_cache_and_steps(dataset: Path):
    result = json.loads(run(benchmark_command(dataset)).stdout)
    assert result["runtime"]["device"] == "cpu" and result["cache"]["clips"] == 8
    assert result["training"]["steps"] == 2 and result["training"]["steps_per_s"] > 0
    assert result["projected_ucf101_split1_epoch_s"] > 0


def test_benchmark_train_stops_when_no_clip_can_be_read(tmp_path: Path):
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for index in range(3):
            (tmp_path / "data" / label / f"{label}_{index}.mp4").write_bytes(b"not a video" * 10)
    result = subprocess.run(benchmark_command(tmp_path / "data"), capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0 and "could be read" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
