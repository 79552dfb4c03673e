"""A run's resumable state, typed: `TrainState` (model, optimiser, schedule, scaler, the epoch
order's generator and the progress so far) with `state_dict()` / `load_state_dict()`, the settings
fingerprint a resumed run must match, and every random state the next epoch draws from.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import MISSING, dataclass, field, fields

import numpy as np
import torch
from rich.console import Console
from torch import nn

from actionrec.errors import TrainingError
from actionrec.training.config import RUNTIME_SETTINGS, TrainConfig
from actionrec.training.devices import Runtime
from actionrec.training.model import ActionModel
from actionrec.training.runs import RunDir
from actionrec.video import spec as sampling


@dataclass
class Progress:
    """Where a run stands after its last completed epoch."""

    epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)

    def record(self, row: dict) -> bool:
        """Add an epoch's history row; whether its validation accuracy is the best so far."""
        self.epoch = row["epoch"]
        self.history.append(row)
        improved = row["val_acc"] > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = row["val_acc"], row["epoch"]
        return improved


@dataclass
class TrainState:
    """Everything a training step changes. `step` is what a step runs: the model (or the head
    alone), wrapped by DDP in a distributed run; it shares the model's parameters and is not saved."""

    model: ActionModel
    step: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # draws each epoch's order of clips
    fingerprint: str = ""  # of the settings and classes: a resumed run must have the same
    progress: Progress = field(default_factory=Progress)

    def state_dict(self, rng: list[dict]) -> dict:
        """What `RunDir.save_state` writes; `rng`: every rank's `rng_states()`."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "rng": rng,
            "history": json.dumps(self.progress.history),
            "epoch": self.progress.epoch,
            "best_acc": self.progress.best_acc,
            "best_epoch": self.progress.best_epoch,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: dict, runtime: Runtime) -> None:
        """Continue from `state` (its fingerprint already checked); this rank's random states too."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        if "rng" in state:  # written by versions before the random states were kept
            states = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
            set_rng_states(states[runtime.rank] if len(states) == runtime.world else states[0])
        self.progress = Progress(state["epoch"], state["best_acc"], state["best_epoch"], json.loads(state["history"]))


def resume(run: RunDir, state: TrainState, config: TrainConfig, labels: list[str], console: Console,
           runtime: Runtime) -> None:
    """Load the run's saved state into `state`, if it has one and it was made with these settings."""
    saved = run.load_state()
    if saved is None:
        console.print(f"No {run.state_path.name} in {run.path}: starting from the first epoch.")
        return
    if saved.get("fingerprint") != fingerprint(config, labels):
        raise TrainingError(
            f"{run.path} holds a run with other settings or classes than these{differences(run, config, labels)}; "
            "--resume continues a run only with the settings it started with (--epochs may change): pass "
            "those, or `--config` with its config.json, or use another --out."
        )
    state.load_state_dict(saved, runtime)
    console.print(f"Resuming after epoch {state.progress.epoch} (best so far {state.progress.best_acc:.1%} "
                  f"at epoch {state.progress.best_epoch}).")


# --------------------------------------------------------------------------- settings


def settings(config: TrainConfig) -> dict:
    """What a resumed run must share with the run it continues: everything but the epoch count and
    where and how fast it runs. Settings at their default are left out, so that a setting added
    later (with a default that keeps what runs did before) does not orphan the runs made before it."""
    return {f.name: getattr(config, f.name) for f in fields(config)
            if f.name != "epochs" and f.name not in RUNTIME_SETTINGS
            and (f.default is MISSING or getattr(config, f.name) != f.default)}


def fingerprint(config: TrainConfig, labels: list[str]) -> str:
    """Of the settings, the classes and the frame sampling's version (left out at version 1, so the
    runs made before it was included keep theirs): a state saved under another one is not resumed."""
    made = [settings(config), labels]
    if sampling.SAMPLING_VERSION != 1:
        made.append({"sampling_version": sampling.SAMPLING_VERSION})
    return hashlib.sha1(json.dumps(made, sort_keys=True).encode()).hexdigest()


def saved_settings(run: RunDir) -> dict:
    """The `train` settings of the run's config.json ({} where there is none)."""
    try:
        return dict(json.loads(run.config_path.read_text(encoding="utf-8"))["train"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def differences(run: RunDir, config: TrainConfig, labels: list[str]) -> str:
    """Which settings (or classes) a run's config.json has otherwise than `config`, for the error."""
    try:
        saved = json.loads(run.config_path.read_text(encoding="utf-8"))
        before = TrainConfig(**saved["train"])
    except Exception:
        return ""
    now, then = json.loads(json.dumps(settings(config))), json.loads(json.dumps(settings(before)))
    changed = [f"--{name.replace('_', '-')} {then.get(name)!r} there, {now.get(name)!r} here"
               for name in sorted(set(now) | set(then)) if now.get(name) != then.get(name)]
    if saved.get("labels") != labels:
        changed.append("other classes")
    return f" ({'; '.join(changed)})" if changed else ""


# --------------------------------------------------------------------------- random states


def rng_states() -> dict:
    """Every random state the next epoch draws from (dropout uses torch's global one), in types
    torch.load(weights_only=True) accepts, so a resumed run continues exactly as it would have."""
    legacy = np.random.get_state(legacy=True)
    if not isinstance(legacy, tuple):  # a tuple wherever np.random runs on MT19937, as it always has
        raise RuntimeError("numpy's global random state is not MT19937's: it cannot be saved for resuming")
    kind, keys, position, has_gauss, gauss = legacy
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
