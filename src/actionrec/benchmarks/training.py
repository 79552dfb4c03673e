"""`actionrec benchmark-train`: how fast this machine builds the training cache and trains, and
the memory it takes, for the settings of a real run.

It caches (up to `clips`) training clips into a cache folder of its own, then times `steps`
training steps fed by the streaming loader, as a run would. On a GPU it also reports its memory
peak and, where NVML answers, its utilisation during both phases. An epoch of UCF101 split 1
(9,537 training clips) is projected from the measured training speed.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from actionrec.datasets import evenly
from actionrec.errors import TrainingError
from actionrec.runtime.resources import PeakMemory
from actionrec.training import devices
from actionrec.training.config import TrainConfig, resolved
from actionrec.training.data import PREFETCH_BATCHES
from actionrec.training.devices import Runtime
from actionrec.training.features import build_cache, cache_for
from actionrec.training.setup import setup
from actionrec.training.state import TrainState
from actionrec.training.steps import Side, epoch_loader, loader_workers, start_state, train_mode, train_step

UCF101_SPLIT1_TRAINING_CLIPS = 9537
WARMUP_STEPS = 2  # plus the batches loader workers read ahead, which would otherwise be timed as free


class _Utilisation:
    """The GPU's mean utilisation (%) while a phase runs, sampled through NVML (None without it)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.samples: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            try:
                self.samples.append(torch.cuda.utilization(self.runtime.device))
            except Exception:  # no NVML (pynvml) here: utilisation stays unknown
                return

    def __enter__(self) -> _Utilisation:
        if self.runtime.cuda:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def _time_steps(state: TrainState, side: Side, config: TrainConfig, runtime: Runtime, steps: int,
                gpu: _Utilisation) -> tuple[float, int]:
    """(seconds, clips) of `steps` training steps, after warm-up steps and the batches loader workers
    read ahead (which would otherwise be timed as free)."""
    train_mode(state.model, config)
    batches = itertools.chain.from_iterable(epoch_loader(side, config, epoch, state.generator, runtime)
                                            for epoch in itertools.count(1))
    if runtime.cuda:
        torch.cuda.reset_peak_memory_stats(runtime.device)
    timed_clips = 0
    warmup = WARMUP_STEPS + PREFETCH_BATCHES * loader_workers(config, runtime)
    for done, (batch, target, global_size) in enumerate(itertools.islice(batches, warmup + steps)):
        if done == warmup:
            if runtime.cuda:
                torch.cuda.synchronize(runtime.device)
            gpu.samples.clear()
            started = time.perf_counter()
        train_step(state, batch, target, global_size, config, runtime)
        timed_clips += len(target) if done >= warmup else 0
    if runtime.cuda:
        torch.cuda.synchronize(runtime.device)
    return time.perf_counter() - started, timed_clips


def benchmark_training(config: TrainConfig, steps: int = 20, clips: int | None = 200,
                       console: Console | None = None) -> dict[str, Any]:
    """Measure cache building and training steps with `config`'s settings; returns the figures."""
    console = console or Console()
    runtime = devices.start(config)
    try:
        ready = setup(config, console, runtime)
        samples = list(evenly(ready.dataset.train, clips))
        config.resolve_schedule(len(ready.dataset.train))  # the batch training would use
        views = resolved(config.train_views, "train_views")
        on_the_fly = config.on_the_fly
        missing = 0 if on_the_fly else len(cache_for(config, views, ready.backbone_id).missing(
            [s.path for s in samples]))
        with PeakMemory() as cache_memory, _Utilisation(runtime) as cache_gpu:
            started = time.perf_counter()
            failed: dict[Path, str]
            if on_the_fly:  # nothing to cache: training steps decode
                cache, usable, failed = None, samples, {}
            else:
                cache, usable, failed = build_cache(config, samples, views, ready.backbone_id, console,
                                                    "Caching training clips", ready.extractor, runtime)
            cache_seconds = time.perf_counter() - started
        if not usable:
            raise TrainingError(f"none of the {len(samples)} training clips could be read: nothing to time.")
        side = Side(usable, cache, 1 if cache is None else views)
        with PeakMemory() as train_memory, _Utilisation(runtime) as train_gpu:
            train_seconds, timed_clips = _time_steps(start_state(ready.model, config, runtime, max(1, steps)), side,
                                                     config, runtime, steps, train_gpu)
    finally:
        devices.stop(runtime)

    steps_per_s = steps / train_seconds
    batch_size = resolved(config.batch_size, "batch_size")
    built = missing - len(failed)
    result: dict[str, Any] = {
        "runtime": runtime.describe(),
        "settings": {"frames": config.frames, "image_size": config.image_size, "end_to_end": config.end_to_end,
                     "batch_size": batch_size, "micro_batch_size": config.micro_batch_size,
                     "train_views": config.train_views, "workers": config.workers, "decode_on_the_fly": on_the_fly},
        "cache": None if on_the_fly else {
            "clips": built, "already_cached": len(samples) - missing, "failed": len(failed),
            "seconds": round(cache_seconds, 2), "clips_per_s": round(built / cache_seconds, 2) if built else None,
            "peak_rss_mb": round(cache_memory.total_mb), "gpu_utilisation_pct": cache_gpu.mean},
        "training": {"steps": steps, "seconds": round(train_seconds, 2), "steps_per_s": round(steps_per_s, 3),
                     "clips_per_s": round(timed_clips / train_seconds, 2),
                     "peak_rss_mb": round(train_memory.total_mb), "gpu_utilisation_pct": train_gpu.mean},
        "projected_ucf101_split1_epoch_s": round(UCF101_SPLIT1_TRAINING_CLIPS / batch_size / steps_per_s),
    }
    if runtime.cuda:
        result["training"]["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated(runtime.device) / 2**20)
    return result
