"""What one training step, one epoch and one validation pass do; the same for every run, on a CPU,
a GPU or one rank of a torchrun run, and for `benchmark-train`, which times the steps."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from actionrec.datasets import Sample
from actionrec.training import devices
from actionrec.training.cache import ClipCache
from actionrec.training.config import TrainConfig, resolved
from actionrec.training.data import (
    CachedViews,
    FreshViews,
    Shard,
    epoch_batches,
    loader,
    shift_clips,
    training_keys,
    validation_batches,
)
from actionrec.training.devices import Runtime, gather
from actionrec.training.model import ActionModel
from actionrec.training.state import TrainState
from actionrec.training.views import EpochView

GRADIENT_CLIP_NORM = 5.0
BACKBONE_LR_FACTOR = 0.1  # fine-tuning pretrained weights: a gentler rate than the new head's
CACHED_LOADER_WORKERS_ON_GPU = 2  # measured on an H100 (16 cores): 0, 2, 4, 8 workers gave 3.6, 5.2, 4.8, 4.5 steps/s


@dataclass
class Side:
    """One side of the split as training reads it: its clips and where their arrays come from."""

    samples: list[Sample]
    cache: ClipCache | None  # None: decoded afresh each epoch
    views: int


class StepModule(nn.Module):
    """What one training step runs (wrapped by DDP in a distributed run): the whole model on
    frames, or the head alone on cached features."""

    def __init__(self, model: ActionModel, end_to_end: bool) -> None:
        super().__init__()
        self.model, self.end_to_end = model, end_to_end

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch) if self.end_to_end else self.model.forward_head(batch.float())


def place(model: ActionModel, config: TrainConfig, runtime: Runtime) -> nn.Module:
    """Move the model to the run's device; what a training step calls (DDP-wrapped across ranks)."""
    model.to(runtime.device)
    if config.end_to_end:  # frames arrive channels-last: faster on GPUs, and by 15-20% on a CPU
        model.to(memory_format=torch.channels_last)
    step: nn.Module = StepModule(model, config.end_to_end)
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
    total = steps_per_epoch * resolved(config.epochs, "epochs")
    warmup = min(steps_per_epoch, total // 10 + 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup))
    return optimizer, scheduler


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def start_state(model: ActionModel, config: TrainConfig, runtime: Runtime, steps_per_epoch: int,
                fingerprint: str = "") -> TrainState:
    """A fresh state: the model placed, its optimiser and schedule, the scaler, the epoch generator."""
    step = place(model, config, runtime)
    optimizer, scheduler = configure_optimizer(model, config, steps_per_epoch)
    return TrainState(model, step, optimizer, scheduler, runtime.scaler(), torch.Generator().manual_seed(config.seed),
                      fingerprint)


def to_device(batch: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    return batch.to(runtime.device, non_blocking=True) if runtime.cuda else batch


def loader_workers(config: TrainConfig, runtime: Runtime) -> int:
    """Loader processes: the configured count when asked; one per core when decoding afresh; for
    cached arrays two ahead of a GPU and none on a CPU (reading them is cheap beside a CPU step)."""
    if config.workers is not None:
        return config.workers
    if config.on_the_fly:
        return devices.cores_per_process()
    return CACHED_LOADER_WORKERS_ON_GPU if runtime.cuda else 0


def epoch_loader(side: Side, config: TrainConfig, epoch: int, generator: torch.Generator,
                 runtime: Runtime) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """(frames or features, labels, size of the global batch) for this rank's part of each batch of
    the epoch, read ahead by loader workers."""
    keys = training_keys(len(side.samples), side.views, epoch, generator, side.cache is None)
    batches = epoch_batches(keys, resolved(config.batch_size, "batch_size"), Shard(runtime.rank, runtime.world))
    dataset = CachedViews(side.cache, side.samples) if side.cache is not None else \
        FreshViews(side.samples, EpochView(config.spec, config.seed, bool(config.flip)))
    parts = loader(dataset, [part for part, _ in batches], loader_workers(config, runtime), runtime.cuda)
    for (batch, target), (part, global_size) in zip(parts, batches):
        # To the device first: shifting there is free, while on the CPU it held an H100 (8 loader
        # processes) to 2.0 steps/s against 3.5.
        batch = to_device(batch, runtime)
        if config.shift and config.end_to_end:
            batch = shift_clips(batch, [index for index, _ in part], config.seed, epoch, config.shift)
        yield batch, to_device(target, runtime), global_size


def train_step(state: TrainState, batch: torch.Tensor, target: torch.Tensor, global_size: int, config: TrainConfig,
               runtime: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on this rank's part of a batch, its gradients accumulated over micro-
    batches of `config.micro_batch_size` clips; returns its (summed loss, correct) as tensors where
    the batch is, so that a GPU is not waited for at every step."""
    weight = runtime.world / global_size if global_size else 0.0  # DDP averages over ranks: the batch mean
    state.optimizer.zero_grad(set_to_none=True)
    loss_sum = correct = torch.zeros((), device=batch.device)
    size = config.micro_batch_size or len(batch)
    starts = range(0, len(batch), size)
    ddp = state.step if isinstance(state.step, nn.parallel.DistributedDataParallel) else None
    for start in starts:
        last = start == starts[-1]
        # Ranks exchange gradients once per step, after its last micro-batch.
        with nullcontext() if last or ddp is None else ddp.no_sync():
            with runtime.autocast():
                logits = state.step(batch[start : start + size])
            part = target[start : start + size]
            losses = F.cross_entropy(logits.float(), part, label_smoothing=config.label_smoothing, reduction="none")
            state.scaler.scale(losses.sum() * weight).backward()
        loss_sum = loss_sum + losses.detach().sum()
        correct = correct + (logits.argmax(-1) == part).sum()
    state.scaler.unscale_(state.optimizer)
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), GRADIENT_CLIP_NORM)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    return loss_sum, correct


def train_mode(model: ActionModel, config: TrainConfig) -> None:
    model.train()
    if not config.end_to_end:
        model.backbone.eval()  # frozen: keep its batch-norm statistics


def train_epoch(state: TrainState, side: Side, config: TrainConfig, epoch: int, runtime: Runtime
                ) -> tuple[float, float]:
    """One pass over the training clips (this rank's part of each batch); returns (loss, accuracy)
    over all of them."""
    train_mode(state.model, config)
    # Loss sum, correct, clips: kept where the batches are (NCCL reduces GPU tensors only), read once.
    totals = torch.zeros(3, dtype=torch.float64, device=runtime.device)
    for batch, target, global_size in epoch_loader(side, config, epoch, state.generator, runtime):
        loss, correct = train_step(state, batch, target, global_size, config, runtime)
        if global_size:
            totals[0] += loss
            totals[1] += correct
            totals[2] += len(target)
    if runtime.distributed:
        dist.all_reduce(totals)
    return float(totals[0] / totals[2]), float(totals[1] / totals[2])


def predict_arrays(model: ActionModel, side: Side, config: TrainConfig, runtime: Runtime) -> np.ndarray:
    """Class probabilities of every clip of `side` (its cached views averaged), in order; each rank
    computes its share and all ranks get the whole."""
    assert side.cache is not None
    model.eval()
    shard = Shard(runtime.rank, runtime.world)
    size = config.micro_batch_size or resolved(config.batch_size, "batch_size")
    batches = validation_batches(len(side.samples), size, shard)
    mine: list[np.ndarray] = []
    forward = StepModule(model, config.end_to_end)
    workers = loader_workers(config, runtime)
    with torch.inference_mode():
        for arrays, _ in loader(CachedViews(side.cache, side.samples), batches, workers, runtime.cuda):
            flat = to_device(arrays.reshape(-1, *arrays.shape[2:]), runtime)
            with runtime.autocast():
                logits = forward(flat)
            clip_probs = torch.softmax(logits.float(), dim=-1).reshape(len(arrays), arrays.shape[1], -1).mean(dim=1)
            mine.append(clip_probs.cpu().numpy())
    classes = model.config.num_classes
    parts = gather(runtime, np.concatenate(mine) if mine else np.zeros((0, classes), np.float32))
    probs = np.empty((len(side.samples), classes), np.float32)
    for rank, part in enumerate(parts):
        probs[rank :: runtime.world] = part
    return probs


def validate(model: ActionModel, side: Side, config: TrainConfig, runtime: Runtime) -> tuple[float, float]:
    """(loss, accuracy) on the validation side."""
    probs = predict_arrays(model, side, config, runtime)
    targets = torch.tensor([sample.label for sample in side.samples])
    loss = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-8)), targets))
    return loss, float((probs.argmax(-1) == targets.numpy()).mean())
