"""Training: cache what the frozen part computes once, then train the rest for many cheap epochs.

Frozen backbone (the default, transfer learning): each clip's frame features are extracted once
and cached; epochs train the temporal head on the cache and take seconds.
End to end (`finetune`, implied by `backbone_weights="none"`): each clip's decoded frames are
cached (or decoded afresh each epoch); epochs run the whole model.

`train` reads top to bottom: where it runs, data, model, cached arrays, optimiser and schedule,
resume, then the epochs. Batches stream from the cache (`actionrec.training.data`); on a GPU with
mixed precision; under torchrun as one rank of a DistributedDataParallel run, where rank 0 alone
writes the run directory (`actionrec.training.runs`).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from contextlib import nullcontext
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.markup import escape
from torch import nn

from actionrec.datasets import DatasetSplit, Sample, load_dataset
from actionrec.errors import TrainingError
from actionrec.model import ActionModel, ModelConfig, load_backbone_weights
from actionrec.training import runtime as runtimes
from actionrec.training.advice import overfitting_advice
from actionrec.training.cache import ClipCache
from actionrec.training.config import RUNTIME_SETTINGS, TrainConfig
from actionrec.training.data import (
    CachedViews,
    FreshViews,
    Shard,
    epoch_batches,
    loader,
    shift_clips,
    steps_per_epoch,
    training_keys,
    validation_batches,
)
from actionrec.training.features import build_cache, extractor_for, progress_bar
from actionrec.training.runs import RunDir
from actionrec.training.runtime import Runtime, barrier, gather
from actionrec.training.views import EpochView, typical_duration

GRADIENT_CLIP_NORM = 5.0
BACKBONE_LR_FACTOR = 0.1  # fine-tuning pretrained weights: a gentler rate than the new head's


@dataclass
class Run:
    """What training produced, as recorded in the run directory."""

    run_dir: Path
    config: TrainConfig
    labels: list[str]
    best_epoch: int
    best_val_acc: float
    history: list[dict] = field(default_factory=list)


@dataclass
class Side:
    """One side of the split as training reads it: its clips and where their arrays come from."""

    samples: list[Sample]
    cache: ClipCache | None  # None: decoded afresh each epoch
    views: int


@dataclass
class Progress:
    """Where a run stands after its last completed epoch: what --resume restores."""

    epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)


class _Step(nn.Module):
    """What one training step runs (wrapped by DDP in a distributed run): the whole model on
    frames, or the head alone on cached features."""

    def __init__(self, model: ActionModel, end_to_end: bool) -> None:
        super().__init__()
        self.model, self.end_to_end = model, end_to_end

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch) if self.end_to_end else self.model.forward_head(batch.float())


# --------------------------------------------------------------------------- steps


def load_split(config: TrainConfig, console: Console) -> DatasetSplit:
    dataset = load_dataset(config.data_dir, kind=config.dataset, split=config.split,
                           val_fraction=config.val_fraction, seed=config.seed)
    for warning in dataset.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if not dataset.train or not dataset.val:
        raise TrainingError(f"{config.data_dir}: need clips for both training and validation ({dataset.description}).")
    console.print(f"{dataset.description}: {len(dataset.classes)} classes, {len(dataset.train)} training and "
                  f"{len(dataset.val)} validation clips")
    return dataset


def build_model(config: TrainConfig, num_classes: int, console: Console) -> tuple[ActionModel, str]:
    model = ActionModel(ModelConfig(num_classes=num_classes, temporal=config.temporal, hidden_size=config.hidden_size,
                                    dropout=config.dropout, width_mult=config.width_mult))
    backbone_id = load_backbone_weights(model, config.backbone_weights)
    if config.backbone_weights == "none":
        zero_init_residuals(model)
    if config.backbone_weights == "none" and not config.finetune:
        console.print("Backbone weights 'none': random features are useless frozen, so the backbone is trained too.")
    if not config.end_to_end:
        model.backbone.requires_grad_(False)
    return model, backbone_id


def _sides(config: TrainConfig, model: ActionModel, dataset: DatasetSplit, backbone_id: str, console: Console,
           runtime: Runtime) -> tuple[Side, Side, dict[Path, str]]:
    """Both sides of the split, cached (or, decoding on the fly, the training side as it is)."""
    sides = []
    skipped: dict[Path, str] = {}
    extractor = extractor_for(config, model, backbone_id, console, runtime)
    for name, samples, views, what in (("training", dataset.train, config.train_views, "Caching training clips"),
                                       ("validation", dataset.val, config.test_views, "Caching validation clips")):
        if name == "training" and config.on_the_fly:
            sides.append(Side(samples, None, 1))
            continue
        cache, usable, failed = build_cache(config, samples, views, backbone_id, console, what, extractor, runtime)
        if not usable:
            examples = "; ".join(f"{path.name}: {error}" for path, error in list(failed.items())[:2])
            raise TrainingError(f"none of the {len(failed)} {name} clips could be read ({examples}).")
        skipped |= failed
        sides.append(Side(usable, cache, views))
    barrier(runtime)  # every rank's share of the cache is written
    return sides[0], sides[1], skipped


def zero_init_residuals(model: ActionModel) -> None:
    """Start each residual block of a randomly initialised backbone as the identity (its last
    batch-norm scale at zero, as Goyal et al. 2017 do for ResNets): trained from scratch on a
    small dataset, the network then starts learning in its first epochs instead of its third."""
    from torchvision.models.mobilenetv2 import InvertedResidual

    for block in model.backbone.modules():
        if isinstance(block, InvertedResidual) and block.use_res_connect:
            torch.nn.init.zeros_(block.conv[-1].weight)


def place(model: ActionModel, config: TrainConfig, runtime: Runtime) -> nn.Module:
    """Move the model to the run's device; what a training step calls (DDP-wrapped across ranks)."""
    model.to(runtime.device)
    if config.end_to_end:  # frames arrive channels-last: faster on GPUs, and by 15-20% on a CPU
        model.to(memory_format=torch.channels_last)
    step: nn.Module = _Step(model, config.end_to_end)
    if runtime.distributed:
        step = nn.parallel.DistributedDataParallel(step, device_ids=[runtime.device] if runtime.cuda else None)
    return step


def configure_optimizer(model: ActionModel, config: TrainConfig, steps_per_epoch: int
                        ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the head (and the backbone when it trains), one warm-up epoch, cosine decay."""
    groups = [{"params": list(model.head.parameters()), "lr": config.lr}]
    if config.end_to_end:
        backbone_lr = config.lr if config.backbone_weights == "none" else config.lr * BACKBONE_LR_FACTOR
        groups.append({"params": list(model.backbone.parameters()), "lr": backbone_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    total = steps_per_epoch * config.epochs
    warmup = min(steps_per_epoch, total // 10 + 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup))
    return optimizer, scheduler


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _to_device(batch: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    return batch.to(runtime.device, non_blocking=True) if runtime.cuda else batch


def epoch_loader(side: Side, config: TrainConfig, epoch: int, generator: torch.Generator,
                 runtime: Runtime) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """(frames or features, labels, size of the global batch) for this rank's part of each batch of
    the epoch, read ahead by loader workers."""
    keys = training_keys(len(side.samples), side.views, epoch, generator, side.cache is None)
    batches = epoch_batches(keys, config.batch_size, Shard(runtime.rank, runtime.world))
    dataset = CachedViews(side.cache, side.samples) if side.cache is not None else \
        FreshViews(side.samples, EpochView(config.spec, config.seed, bool(config.flip)))
    parts = loader(dataset, [part for part, _ in batches], _loader_workers(config, runtime), runtime.cuda)
    for (batch, target), (part, global_size) in zip(parts, batches):
        # To the device first: shifting there is free, while on the CPU it held an H100 (8 loader
        # processes) to 2.0 steps/s against 3.5.
        batch = _to_device(batch, runtime)
        if config.shift and config.end_to_end:
            batch = shift_clips(batch, [index for index, _ in part], config.seed, epoch, config.shift)
        yield batch, _to_device(target, runtime), global_size


def train_step(step: nn.Module, model: ActionModel, batch: torch.Tensor, target: torch.Tensor, global_size: int,
               config: TrainConfig, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
               scaler: torch.amp.GradScaler, runtime: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on this rank's part of a batch, its gradients accumulated over micro-
    batches of `config.micro_batch_size` clips; returns its (summed loss, correct) as tensors where
    the batch is, so that a GPU is not waited for at every step."""
    weight = runtime.world / global_size if global_size else 0.0  # DDP averages over ranks: the batch mean
    optimizer.zero_grad(set_to_none=True)
    loss_sum = correct = torch.zeros((), device=batch.device)
    size = config.micro_batch_size or len(batch)
    starts = range(0, len(batch), size)
    for start in starts:
        last = start == starts[-1]
        # Ranks exchange gradients once per step, after its last micro-batch.
        with nullcontext() if last or not isinstance(step, nn.parallel.DistributedDataParallel) else step.no_sync():
            with runtime.autocast():
                logits = step(batch[start : start + size])
            part = target[start : start + size]
            losses = F.cross_entropy(logits.float(), part, label_smoothing=config.label_smoothing, reduction="none")
            scaler.scale(losses.sum() * weight).backward()
        loss_sum = loss_sum + losses.detach().sum()
        correct = correct + (logits.argmax(-1) == part).sum()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP_NORM)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss_sum, correct


def _train_epoch(step: nn.Module, model: ActionModel, side: Side, config: TrainConfig, epoch: int,
                 optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                 scaler: torch.amp.GradScaler, generator: torch.Generator, runtime: Runtime) -> tuple[float, float]:
    """One pass over the training clips (this rank's part of each batch); returns (loss, accuracy)
    over all of them."""
    model.train()
    if not config.end_to_end:
        model.backbone.eval()  # frozen: keep its batch-norm statistics
    # Loss sum, correct, clips: kept where the batches are (NCCL reduces GPU tensors only), read once.
    totals = torch.zeros(3, dtype=torch.float64, device=runtime.device)
    for batch, target, global_size in epoch_loader(side, config, epoch, generator, runtime):
        loss, correct = train_step(step, model, batch, target, global_size, config, optimizer, scheduler, scaler,
                                   runtime)
        if global_size:
            totals[0] += loss
            totals[1] += correct
            totals[2] += len(target)
    if runtime.distributed:
        dist.all_reduce(totals)
    return float(totals[0] / totals[2]), float(totals[1] / totals[2])


CACHED_LOADER_WORKERS_ON_GPU = 2  # measured on an H100 (16 cores): 0, 2, 4, 8 workers gave 3.6, 5.2, 4.8, 4.5 steps/s


def _loader_workers(config: TrainConfig, runtime: Runtime) -> int:
    """Loader processes: the configured count when asked; one per core when decoding afresh; for
    cached arrays two ahead of a GPU and none on a CPU (reading them is cheap beside a CPU step)."""
    if config.workers is not None:
        return config.workers
    if config.on_the_fly:
        return runtimes.cores_per_process()
    return CACHED_LOADER_WORKERS_ON_GPU if runtime.cuda else 0


def predict_arrays(model: ActionModel, side: Side, config: TrainConfig, runtime: Runtime) -> np.ndarray:
    """Class probabilities of every clip of `side` (its cached views averaged), in order; each rank
    computes its share and all ranks get the whole."""
    assert side.cache is not None
    model.eval()
    shard = Shard(runtime.rank, runtime.world)
    batches = validation_batches(len(side.samples), config.micro_batch_size or config.batch_size, shard)
    mine: list[np.ndarray] = []
    forward = _Step(model, config.end_to_end)
    workers = _loader_workers(config, runtime)
    with torch.inference_mode():
        for arrays, _ in loader(CachedViews(side.cache, side.samples), batches, workers, runtime.cuda):
            flat = _to_device(arrays.reshape(-1, *arrays.shape[2:]), runtime)
            with runtime.autocast():
                logits = forward(flat)
            probs = torch.softmax(logits.float(), dim=-1).reshape(len(arrays), arrays.shape[1], -1).mean(dim=1)
            mine.append(probs.cpu().numpy())
    classes = model.config.num_classes
    parts = gather(runtime, np.concatenate(mine) if mine else np.zeros((0, classes), np.float32))
    probs = np.empty((len(side.samples), classes), np.float32)
    for rank, part in enumerate(parts):
        probs[rank :: runtime.world] = part
    return probs


def _validate(model: ActionModel, side: Side, config: TrainConfig, runtime: Runtime) -> tuple[float, float]:
    probs = predict_arrays(model, side, config, runtime)
    targets = torch.tensor([sample.label for sample in side.samples])
    loss = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-8)), targets))
    return loss, float((probs.argmax(-1) == targets.numpy()).mean())


def _advice(progress: Progress, side: Side, config: TrainConfig, final: bool = False) -> str | None:
    return overfitting_advice(progress.history, len(side.samples), config.end_to_end, bool(config.flip), final,
                              config.shift)


def _settings(config: TrainConfig) -> dict:
    """What a resumed run must share with the run it continues: everything but the epoch count and
    where and how fast it runs. Settings at their default are left out, so that a setting added
    later (with a default that keeps what runs did before) does not orphan the runs made before it."""
    return {f.name: getattr(config, f.name) for f in fields(config)
            if f.name != "epochs" and f.name not in RUNTIME_SETTINGS
            and (f.default is MISSING or getattr(config, f.name) != f.default)}


def _fingerprint(config: TrainConfig, labels: list[str]) -> str:
    return hashlib.sha1(json.dumps([_settings(config), labels], sort_keys=True).encode()).hexdigest()


def _saved_settings(run: RunDir) -> dict:
    """The `train` settings of the run's config.json ({} where there is none)."""
    try:
        return dict(json.loads(run.config_path.read_text(encoding="utf-8"))["train"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _differences(run: RunDir, config: TrainConfig, labels: list[str]) -> str:
    """Which settings (or classes) a run's config.json has otherwise than `config`, for the error."""
    try:
        saved = json.loads(run.config_path.read_text(encoding="utf-8"))
        before = TrainConfig(**saved["train"])
    except Exception:
        return ""
    now, then = json.loads(json.dumps(_settings(config))), json.loads(json.dumps(_settings(before)))
    changed = [f"--{name.replace('_', '-')} {then.get(name)!r} there, {now.get(name)!r} here"
               for name in sorted(set(now) | set(then)) if now.get(name) != then.get(name)]
    if saved.get("labels") != labels:
        changed.append("other classes")
    return f" ({'; '.join(changed)})" if changed else ""


def _rng_states() -> dict:
    """Every random state the next epoch draws from (dropout uses torch's global one), in types
    torch.load(weights_only=True) accepts, so a resumed run continues exactly as it would have."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def _resume(run: RunDir, config: TrainConfig, labels: list[str], model: ActionModel, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LambdaLR, scaler: torch.amp.GradScaler, generator: torch.Generator,
            console: Console, runtime: Runtime) -> Progress:
    state = run.load_state()
    if state is None:
        console.print(f"No {run.state_path.name} in {run.path}: starting from the first epoch.")
        return Progress()
    if state.get("fingerprint") != _fingerprint(config, labels):
        raise TrainingError(
            f"{run.path} holds a run with other settings or classes than these{_differences(run, config, labels)}; "
            "--resume continues a run only with the settings it started with (--epochs may change): pass "
            "those, or `--config` with its config.json, or use another --out."
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    generator.set_state(state["generator"])
    if "rng" in state:  # written by versions before the random states were kept
        states = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        _set_rng_states(states[runtime.rank] if len(states) == runtime.world else states[0])
    progress = Progress(state["epoch"], state["best_acc"], state["best_epoch"], json.loads(state["history"]))
    console.print(f"Resuming after epoch {progress.epoch} (best so far {progress.best_acc:.1%} "
                  f"at epoch {progress.best_epoch}).")
    return progress


# --------------------------------------------------------------------------- the run


def train(config: TrainConfig, *, resume: bool = False, console: Console | None = None) -> Run:
    runtime = runtimes.start(config)
    try:
        console = console if runtime.main else Console(quiet=True)
        return _train(config, resume, console or Console(), runtime)
    finally:
        runtimes.stop(runtime)


def _train(config: TrainConfig, resume: bool, console: Console, runtime: Runtime) -> Run:
    torch.manual_seed(config.seed)
    if not runtime.cuda:
        torch.set_num_threads(runtimes.cores_per_process())
    run = RunDir(config.out)
    if runtime.main:
        run.path.mkdir(parents=True, exist_ok=True)
    console.print(f"Training on {runtime.device} ({runtime.precision}" +
                  (f", {runtime.world} processes)" if runtime.distributed else ")"))

    dataset = load_split(config, console)
    model, backbone_id = build_model(config, len(dataset.classes), console)
    train_side, val_side, skipped = _sides(config, model, dataset, backbone_id, console, runtime)
    if config.epochs is None or config.batch_size is None:
        if resume:  # the schedule the run started with, not one drawn again from today's clips
            saved = _saved_settings(run)
            config.epochs = config.epochs or saved.get("epochs")
            config.batch_size = config.batch_size or saved.get("batch_size")
        config.resolve_schedule(len(train_side.samples))
        console.print(f"{config.epochs} epochs of batches of {config.batch_size} "
                      f"({steps_per_epoch(len(train_side.samples), config.batch_size) * config.epochs} optimiser steps)")
    step = place(model, config, runtime)
    optimizer, scheduler = configure_optimizer(model, config, steps_per_epoch(len(train_side.samples),
                                                                                config.batch_size))
    scaler = runtime.scaler()
    generator = torch.Generator().manual_seed(config.seed)
    fingerprint = _fingerprint(config, dataset.classes)
    progress = (_resume(run, config, dataset.classes, model, optimizer, scheduler, scaler, generator, console, runtime)
                if resume else Progress())
    if runtime.main:
        run.write_config(config, model.config, dataset.classes, dataset=f"{Path(config.data_dir).name}: "
                         f"{dataset.description}", backbone_id=backbone_id, num_train=len(train_side.samples),
                         num_val=len(val_side.samples), skipped=skipped,
                         clip_duration_s=typical_duration(dataset.train), runtime=runtime.describe())

    advised = False
    print_every = math.ceil(config.epochs / 20)
    with progress_bar(console) as bar:
        task = bar.add_task("Training", total=config.epochs, completed=progress.epoch, status="")
        for epoch in range(progress.epoch + 1, config.epochs + 1):
            started = time.perf_counter()
            train_loss, train_acc = _train_epoch(step, model, train_side, config, epoch, optimizer, scheduler, scaler,
                                                 generator, runtime)
            val_loss, val_acc = _validate(model, val_side, config, runtime)
            row = {
                "epoch": epoch,
                "train_loss": round(train_loss, 5),
                "train_acc": round(train_acc, 5),
                "val_loss": round(val_loss, 5),
                "val_acc": round(val_acc, 5),
                "lr": float(f"{optimizer.param_groups[0]['lr']:.3g}"),
                "seconds": round(time.perf_counter() - started, 2),
            }
            progress.epoch = epoch
            progress.history.append(row)
            improved = val_acc > progress.best_acc
            if improved:
                progress.best_acc, progress.best_epoch = val_acc, epoch
            rng = gather(runtime, _rng_states())
            if runtime.main:
                if improved:
                    run.save_weights(model)
                run.write_history(progress.history)
                run.save_state({
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "generator": generator.get_state(),
                    "rng": rng,
                    "history": json.dumps(progress.history),
                    "epoch": epoch,
                    "best_acc": progress.best_acc,
                    "best_epoch": progress.best_epoch,
                    "fingerprint": fingerprint,
                })
            barrier(runtime)
            status = (f"loss {row['train_loss']:.3f} acc {row['train_acc']:.1%} | "
                      f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.1%}")
            bar.update(task, advance=1, status=status)
            if epoch % print_every == 0 or epoch == config.epochs:  # about 20 lines however long the run
                bar.console.print(f"epoch {epoch:3d}/{config.epochs}  {status}  ({row['seconds']:.1f} s)")
            if not advised and (advice := _advice(progress, train_side, config)):
                bar.console.print(f"[yellow]note:[/yellow] {escape(advice)}")
                advised = True

    console.print(f"Best validation accuracy {progress.best_acc:.1%} at epoch {progress.best_epoch}; "
                  f"weights in {run.weights_path}")
    if advice := _advice(progress, train_side, config, final=True):
        console.print(f"[yellow]note:[/yellow] {escape(advice)}")
    return Run(run.path, config, dataset.classes, progress.best_epoch, progress.best_acc, progress.history)
