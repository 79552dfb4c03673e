"""Training: cache what the frozen part computes once, then train the rest for many cheap epochs.

Frozen backbone (the default, transfer learning): each clip's frame features are extracted once
and cached; epochs train the temporal head on the cache and take seconds.
End to end (`finetune`, implied by `backbone_weights="none"`): each clip's decoded frames are
cached; epochs run the whole model.

`train` reads top to bottom: data, model, cached arrays, optimiser and schedule, resume, then the
epochs. What it writes is described in `actionrec.training.runs`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from actionrec.datasets import DatasetSplit, load_dataset
from actionrec.errors import TrainingError
from actionrec.model import ActionModel, ModelConfig, load_backbone_weights
from actionrec.training.config import TrainConfig
from actionrec.training.features import build_cache, extractor_for, load_arrays, progress_bar, typical_duration
from actionrec.training.runs import RunDir

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
class Arrays:
    """Cached arrays of one side of the split: (N, V, ...) frames or features, and (N,) labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Progress:
    """Where a run stands after its last completed epoch: what --resume restores."""

    epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------- steps


def _load_dataset(config: TrainConfig, console: Console) -> DatasetSplit:
    dataset = load_dataset(config.data_dir, kind=config.dataset, split=config.split,
                           val_fraction=config.val_fraction, seed=config.seed)
    for warning in dataset.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if not dataset.train or not dataset.val:
        raise TrainingError(f"{config.data_dir}: need clips for both training and validation ({dataset.description}).")
    console.print(f"{dataset.description}: {len(dataset.classes)} classes, {len(dataset.train)} training and "
                  f"{len(dataset.val)} validation clips")
    return dataset


def _build_model(config: TrainConfig, num_classes: int, console: Console) -> tuple[ActionModel, str]:
    model = ActionModel(ModelConfig(num_classes=num_classes, temporal=config.temporal, hidden_size=config.hidden_size,
                                    dropout=config.dropout, width_mult=config.width_mult))
    backbone_id = load_backbone_weights(model, config.backbone_weights)
    if config.backbone_weights == "none" and not config.finetune:
        console.print("Backbone weights 'none': random features are useless frozen, so the backbone is trained too.")
    if not config.end_to_end:
        model.backbone.requires_grad_(False)
    return model, backbone_id


def _cached_arrays(config: TrainConfig, model: ActionModel, dataset: DatasetSplit, backbone_id: str,
                   console: Console) -> tuple[Arrays, Arrays, int, int, dict[Path, str]]:
    """Both sides of the split as cached arrays; returns (train, val, train count, val count, skipped)."""
    sides = []
    skipped: dict[Path, str] = {}
    extractor = extractor_for(config, model, backbone_id, console)
    for side, samples, views, what in (("training", dataset.train, config.train_views, "Caching training clips"),
                                       ("validation", dataset.val, config.test_views, "Caching validation clips")):
        cache, usable, failed = build_cache(config, samples, views, backbone_id, console, what, extractor)
        if not usable:
            examples = "; ".join(f"{path.name}: {error}" for path, error in list(failed.items())[:2])
            raise TrainingError(f"none of the {len(failed)} {side} clips could be read ({examples}).")
        skipped |= failed
        sides.append(Arrays(*load_arrays(cache, usable)))
    return sides[0], sides[1], len(sides[0]), len(sides[1]), skipped


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


def _forward(model: ActionModel, batch: torch.Tensor, end_to_end: bool) -> torch.Tensor:
    return model(batch) if end_to_end else model.forward_head(batch.float())


def _train_epoch(model: ActionModel, data: Arrays, config: TrainConfig, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LambdaLR, generator: torch.Generator) -> tuple[float, float]:
    """One pass over the training clips, each with one of its cached views; returns (loss, accuracy)."""
    model.train()
    if not config.end_to_end:
        model.backbone.eval()  # frozen: keep its batch-norm statistics
    order = torch.randperm(len(data), generator=generator)
    view_choice = torch.randint(data.x.shape[1], (len(data),), generator=generator)
    loss_sum, correct = 0.0, 0
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        logits = _forward(model, data.x[idx, view_choice[idx]], config.end_to_end)
        loss = F.cross_entropy(logits, data.y[idx], label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP_NORM)
        optimizer.step()
        scheduler.step()
        loss_sum += loss.item() * len(idx)
        correct += (logits.argmax(-1) == data.y[idx]).sum().item()
    return loss_sum / len(order), correct / len(order)


def predict_arrays(model: ActionModel, arrays: torch.Tensor, end_to_end: bool, batch_size: int) -> np.ndarray:
    """Class probabilities for cached arrays (N, V, ...), averaged over the V views."""
    model.eval()
    n, views = arrays.shape[:2]
    probs = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            chunk = arrays[start : start + batch_size]
            flat = chunk.reshape(-1, *chunk.shape[2:])
            p = torch.softmax(_forward(model, flat, end_to_end), dim=-1)
            probs.append(p.reshape(len(chunk), views, -1).mean(dim=1))
    return torch.cat(probs).numpy()


def _validate(model: ActionModel, data: Arrays, config: TrainConfig) -> tuple[float, float]:
    probs = predict_arrays(model, data.x, config.end_to_end, config.batch_size)
    loss = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-8)), data.y))
    return loss, float((probs.argmax(-1) == data.y.numpy()).mean())


def _fingerprint(config: TrainConfig, labels: list[str]) -> str:
    """What a resumed run must share with the run it continues: everything but the epoch count."""
    settings = asdict(config) | {"epochs": None, "out": None, "cache_dir": None}
    return hashlib.sha1(json.dumps([settings, labels], sort_keys=True).encode()).hexdigest()


def _rng_states() -> dict:
    """Every random state the next epoch draws from (dropout uses torch's global one), in types
    torch.load(weights_only=True) accepts, so a resumed run continues exactly as it would have."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
    }


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def _resume(run: RunDir, fingerprint: str, model: ActionModel, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LambdaLR, generator: torch.Generator, console: Console) -> Progress:
    state = run.load_state()
    if state is None:
        console.print(f"No {run.state_path.name} in {run.path}: starting from the first epoch.")
        return Progress()
    if state.get("fingerprint") != fingerprint:
        raise TrainingError(
            f"{run.path} holds a run with other settings or classes than these; --resume continues "
            "a run only with the settings it started with (--epochs may change). Use another --out."
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    if "rng" in state:  # written by versions before the random states were kept
        _set_rng_states(state["rng"])
    progress = Progress(state["epoch"], state["best_acc"], state["best_epoch"], json.loads(state["history"]))
    console.print(f"Resuming after epoch {progress.epoch} (best so far {progress.best_acc:.1%} "
                  f"at epoch {progress.best_epoch}).")
    return progress


# --------------------------------------------------------------------------- the run


def train(config: TrainConfig, *, resume: bool = False, console: Console | None = None) -> Run:
    console = console or Console()
    torch.manual_seed(config.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    run = RunDir(config.out)
    run.path.mkdir(parents=True, exist_ok=True)

    dataset = _load_dataset(config, console)
    model, backbone_id = _build_model(config, len(dataset.classes), console)
    train_data, val_data, num_train, num_val, skipped = _cached_arrays(config, model, dataset, backbone_id, console)
    optimizer, scheduler = configure_optimizer(model, config, math.ceil(num_train / config.batch_size))
    generator = torch.Generator().manual_seed(config.seed)
    fingerprint = _fingerprint(config, dataset.classes)
    progress = (_resume(run, fingerprint, model, optimizer, scheduler, generator, console) if resume
                else Progress())
    clip_duration = typical_duration(dataset.train)
    run.write_config(config, model.config, dataset.classes, dataset=f"{Path(config.data_dir).name}: "
                     f"{dataset.description}", backbone_id=backbone_id, num_train=num_train, num_val=num_val,
                     skipped=skipped, clip_duration_s=clip_duration)

    with progress_bar(console) as bar:
        task = bar.add_task("Training", total=config.epochs, completed=progress.epoch, status="")
        for epoch in range(progress.epoch + 1, config.epochs + 1):
            started = time.perf_counter()
            train_loss, train_acc = _train_epoch(model, train_data, config, optimizer, scheduler, generator)
            val_loss, val_acc = _validate(model, val_data, config)
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
            if val_acc > progress.best_acc:
                progress.best_acc, progress.best_epoch = val_acc, epoch
                run.save_weights(model)
            run.write_history(progress.history)
            run.save_state({
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "rng": _rng_states(),
                "history": json.dumps(progress.history),
                "epoch": epoch,
                "best_acc": progress.best_acc,
                "best_epoch": progress.best_epoch,
                "fingerprint": fingerprint,
            })
            status = (f"loss {row['train_loss']:.3f} acc {row['train_acc']:.1%} | "
                      f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.1%}")
            bar.update(task, advance=1, status=status)
            bar.console.print(f"epoch {epoch:3d}/{config.epochs}  {status}  ({row['seconds']:.1f} s)")

    console.print(f"Best validation accuracy {progress.best_acc:.1%} at epoch {progress.best_epoch}; "
                  f"weights in {run.weights_path}")
    return Run(run.path, config, dataset.classes, progress.best_epoch, progress.best_acc, progress.history)
