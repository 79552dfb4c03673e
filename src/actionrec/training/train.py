"""Training: cache what the frozen part computes once, then train the rest for many cheap epochs.

Frozen backbone (the default, transfer learning): each clip's frame features are extracted once
and cached; epochs train the temporal head on the cache and take seconds.
End to end (`finetune`, implied by `backbone_weights="none"`): each clip's decoded frames are
cached (or decoded afresh each epoch); epochs run the whole model.

`train` reads top to bottom: where it runs, the setup (data, model; `actionrec.training.setup`),
cached arrays, the state (optimiser, schedule; `actionrec.training.state`), resume, then the
epochs (`actionrec.training.steps`). Batches stream from the cache (`actionrec.training.data`); on
a GPU with mixed precision; under torchrun as one rank of a DistributedDataParallel run, where
rank 0 alone writes the run directory (`actionrec.training.runs`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from actionrec.errors import TrainingError
from actionrec.training import devices
from actionrec.training.advice import overfitting_advice
from actionrec.training.config import TrainConfig, resolved
from actionrec.training.data import steps_per_epoch
from actionrec.training.devices import Runtime, barrier, gather
from actionrec.training.features import build_cache, progress_bar
from actionrec.training.runs import RunDir
from actionrec.training.setup import Setup, setup
from actionrec.training.state import Progress, TrainState, fingerprint, rng_states, saved_settings
from actionrec.training.state import resume as resume_state
from actionrec.training.steps import Side, start_state, train_epoch, validate
from actionrec.training.views import typical_duration


@dataclass
class Run:
    """What training produced, as recorded in the run directory."""

    run_dir: Path
    config: TrainConfig
    labels: list[str]
    best_epoch: int
    best_val_acc: float
    history: list[dict] = field(default_factory=list)


def train(config: TrainConfig, *, resume: bool = False, console: Console | None = None) -> Run:
    runtime = devices.start(config)
    try:
        console = console if runtime.main else Console(quiet=True)
        return _train(config, resume, console or Console(), runtime)
    finally:
        devices.stop(runtime)


def _train(config: TrainConfig, resume: bool, console: Console, runtime: Runtime) -> Run:
    run = RunDir(config.out)
    if resume:  # before any clip is decoded: a run sampled otherwise cannot go on
        run.check_sampling("resume")
    if runtime.main:
        run.path.mkdir(parents=True, exist_ok=True)
    console.print(f"Training on {runtime.device} ({runtime.precision}" +
                  (f", {runtime.world} processes)" if runtime.distributed else ")"))
    ready = setup(config, console, runtime)
    _resolve_schedule(config, run, len(ready.dataset.train), resume, console)  # views too: before caching
    train_side, val_side, skipped = _sides(config, ready, console, runtime)
    classes = ready.dataset.classes
    steps = steps_per_epoch(len(train_side.samples), resolved(config.batch_size, "batch_size"))
    state = start_state(ready.model, config, runtime, steps, fingerprint(config, classes))
    if resume:
        resume_state(run, state, config, classes, console, runtime)
    if runtime.main:
        run.write_config(config, ready.model.config, classes, dataset=f"{Path(config.data_dir).name}: "
                         f"{ready.dataset.description}", backbone_id=ready.backbone_id,
                         num_train=len(train_side.samples), num_val=len(val_side.samples), skipped=skipped,
                         clip_duration_s=typical_duration(ready.dataset.train), runtime=runtime.describe())
    _epochs(state, run, train_side, val_side, config, console, runtime)
    progress = state.progress
    console.print(f"Best validation accuracy {progress.best_acc:.1%} at epoch {progress.best_epoch}; "
                  f"weights in {run.weights_path}")
    if advice := _advice(progress, train_side, config, final=True):
        console.print(f"[yellow]note:[/yellow] {escape(advice)}")
    return Run(run.path, config, classes, progress.best_epoch, progress.best_acc, progress.history)


def _sides(config: TrainConfig, ready: Setup, console: Console, runtime: Runtime) -> tuple[Side, Side, dict[Path, str]]:
    """Both sides of the split, cached (or, decoding on the fly, the training side as it is)."""
    sides = []
    skipped: dict[Path, str] = {}
    for name, samples, views, what in (
            ("training", ready.dataset.train, resolved(config.train_views, "train_views"), "Caching training clips"),
            ("validation", ready.dataset.val, resolved(config.test_views, "test_views"), "Caching validation clips")):
        if name == "training" and config.on_the_fly:
            sides.append(Side(samples, None, 1))
            continue
        cache, usable, failed = build_cache(config, samples, views, ready.backbone_id, console, what, ready.extractor,
                                            runtime)
        if not usable:
            examples = "; ".join(f"{path.name}: {error}" for path, error in list(failed.items())[:2])
            raise TrainingError(f"none of the {len(failed)} {name} clips could be read ({examples}).")
        skipped |= failed
        sides.append(Side(usable, cache, views))
    barrier(runtime)  # every rank's share of the cache is written
    return sides[0], sides[1], skipped


def _resolve_schedule(config: TrainConfig, run: RunDir, clips: int, resume: bool, console: Console) -> None:
    """Epochs and batch size where the config leaves them to the recipe."""
    if None not in (config.epochs, config.batch_size, config.train_views, config.test_views):
        return
    if resume:  # the schedule the run started with, not one drawn again from today's clips
        saved = saved_settings(run)
        for name in ("epochs", "batch_size", "train_views", "test_views"):
            if getattr(config, name) is None:
                setattr(config, name, saved.get(name))
    config.resolve_schedule(clips)
    epochs, batch_size = resolved(config.epochs, "epochs"), resolved(config.batch_size, "batch_size")
    console.print(f"{epochs} epochs of batches of {batch_size} "
                  f"({steps_per_epoch(clips, batch_size) * epochs} optimiser steps); {config.train_views} "
                  f"view(s) cached per training clip, {config.test_views} averaged per validation clip")


def _epochs(state: TrainState, run: RunDir, train_side: Side, val_side: Side, config: TrainConfig, console: Console,
            runtime: Runtime) -> None:
    """The epochs from where `state` stands to the last, each saved as it ends."""
    advised = False
    epochs = resolved(config.epochs, "epochs")
    print_every = math.ceil(epochs / 20)
    with progress_bar(console) as bar:
        task = bar.add_task("Training", total=epochs, completed=state.progress.epoch, status="")
        for epoch in range(state.progress.epoch + 1, epochs + 1):
            started = time.perf_counter()
            train_loss, train_acc = train_epoch(state, train_side, config, epoch, runtime)
            val_loss, val_acc = validate(state.model, val_side, config, runtime)
            row = {
                "epoch": epoch,
                "train_loss": round(train_loss, 5),
                "train_acc": round(train_acc, 5),
                "val_loss": round(val_loss, 5),
                "val_acc": round(val_acc, 5),
                "lr": float(f"{state.optimizer.param_groups[0]['lr']:.3g}"),
                "seconds": round(time.perf_counter() - started, 2),
            }
            _save_epoch(state, run, row, runtime)
            status = (f"loss {row['train_loss']:.3f} acc {row['train_acc']:.1%} | "
                      f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.1%}")
            bar.update(task, advance=1, status=status)
            if epoch % print_every == 0 or epoch == epochs:  # about 20 lines however long the run
                bar.console.print(f"epoch {epoch:3d}/{epochs}  {status}  ({row['seconds']:.1f} s"
                                  f"{_time_left(state.progress.history, epochs - epoch)})")
            if not advised and (advice := _advice(state.progress, train_side, config)):
                bar.console.print(f"[yellow]note:[/yellow] {escape(advice)}")
                advised = True


def _time_left(history: list[dict], epochs_left: int) -> str:
    """'; about 1 min 40 s left', at the pace of the last five epochs."""
    if not epochs_left:
        return ""
    recent = [row["seconds"] for row in history[-5:] if "seconds" in row]
    seconds = round(sum(recent) / max(len(recent), 1) * epochs_left)
    return f"; about {seconds // 60} min {seconds % 60} s left" if seconds >= 60 else f"; about {seconds} s left"


def _save_epoch(state: TrainState, run: RunDir, row: dict, runtime: Runtime) -> None:
    """Record the epoch; rank 0 writes the best weights, the history and the resume state."""
    improved = state.progress.record(row)
    rng = gather(runtime, rng_states())
    if runtime.main:
        if improved:
            run.save_weights(state.model)
        run.write_history(state.progress.history)
        run.save_state(state.state_dict(rng))
    barrier(runtime)


def _advice(progress: Progress, side: Side, config: TrainConfig, final: bool = False) -> str | None:
    return overfitting_advice(progress.history, len(side.samples), config.end_to_end, bool(config.flip), final,
                              resolved(config.shift, "shift"))
