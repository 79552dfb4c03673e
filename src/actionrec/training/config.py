"""Training settings and their defaults, in one place. No torch: the CLI reads defaults from here.

Some defaults depend on the dataset (the UCF101 recipe caches two views per clip, flips them,
averages two views at test time and trains longer with larger batches); those fields default to
None and take their dataset's recipe value, so a user overrides only what they name. A folder
dataset's epochs and batch size follow its size (`resolve_schedule`): a head on frozen features
trains for at least `MIN_HEAD_STEPS` optimiser steps however few clips there are.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from actionrec.card import TEMPORAL_HEADS
from actionrec.datasets import DATASET_KINDS
from actionrec.video.spec import ClipSpec, DecodeLimits

# Dataset files are trusted more than uploads: long videos are allowed.
TRAINING_LIMITS = DecodeLimits(max_duration_s=3 * 3600.0)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_SHIFT = 0.125
# Settings that say where a run goes and what memory it takes, not what it learns: a run may resume
# under other values of these.
RUNTIME_SETTINGS = ("out", "cache_dir", "device", "precision", "workers", "micro_batch_size", "ray", "ray_address")

# Sized so that feature extraction for UCF101 split 1 fits in about an hour on 2 CPU cores. A folder's
# epochs and batch size (None here) follow the number of training clips: see TrainConfig.resolve_schedule.
RECIPES: dict[str, dict[str, Any]] = {
    "folder": dict(epochs=None, batch_size=None, train_views=1, test_views=1, flip=False),
    "ucf101": dict(epochs=20, batch_size=64, train_views=2, test_views=2, flip=True),
}
# A folder dataset's schedule. A fixed 15 epochs of batch 32 gave a 70-clip dataset 45 optimiser steps,
# after which its training accuracy was still 77%: a head on frozen features (a step takes
# milliseconds) now trains for at least MIN_HEAD_STEPS steps, in batches of about an eighth of the clips.
MIN_EPOCHS, MAX_EPOCHS = 15, 200
MIN_HEAD_STEPS = 600
MIN_BATCH, MAX_BATCH = 8, 32


@dataclass
class TrainConfig:
    data_dir: str
    out: str
    dataset: str = "folder"  # "folder" or "ucf101"
    split: int = 1  # UCF101's official split, or the number in a folder's trainlistNN/testlistNN
    val_fraction: float = 0.2  # folder datasets without list files: share of each class held out
    epochs: int | None = None  # None: the dataset's recipe (see RECIPES; a folder's: resolve_schedule)
    frames: int = 16  # frames sampled per clip
    image_size: int = 224  # square frame size fed to MobileNetV2
    batch_size: int | None = None  # None: the dataset's recipe (a folder's: resolve_schedule)
    lr: float = 1e-3  # peak learning rate: AdamW, warm-up, cosine decay
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    backbone_weights: str = "imagenet"  # "imagenet", "none" (random, trains end to end) or a path
    temporal: str = "lstm"  # "lstm" or "mean" (the order-blind baseline)
    finetune: bool = False  # train the backbone too (implied by backbone_weights "none")
    width_mult: float = 1.0
    hidden_size: int = 512
    dropout: float = 0.5
    train_views: int | None = None  # temporal clips cached per training video; one is drawn each epoch
    test_views: int | None = None  # clips averaged per validation video
    flip: bool | None = None  # horizontal flips as augmentation (wrong where left/right is the label)
    shift: float | None = None  # end to end: move each training clip (all its frames alike) by up to this share
    # of its size, afresh every epoch; None: 0.125 end to end (measured: 52% -> 69% held out on synth data), 0 frozen
    seed: int = 0
    cache_dir: str | None = None
    device: str = "auto"  # "auto" (a GPU when there is one), "cpu", "cuda", "cuda:N"
    precision: str = "auto"  # "auto" (bf16 on GPUs that have it, else fp16; fp32 on CPUs), "fp32", "bf16", "fp16"
    workers: int | None = None  # processes decoding clips, and loading batches; None: one per core
    micro_batch_size: int | None = None  # clips per forward/backward pass, gradients accumulated; None: the batch
    ray: bool = False  # build the cache on Ray (a local Ray, or the cluster at ray_address / $RAY_ADDRESS)
    ray_address: str | None = None
    decode_on_the_fly: bool = False  # end to end: a fresh random view of each clip every epoch, no frame cache

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_KINDS:
            raise ValueError(f"--dataset must be 'folder' or 'ucf101', not {self.dataset!r}.")
        if self.temporal not in TEMPORAL_HEADS:
            raise ValueError(f"--temporal must be 'lstm' or 'mean', not {self.temporal!r}.")
        if self.shift is None:
            self.shift = DEFAULT_SHIFT if self.end_to_end else 0.0
        if not 0 <= self.shift < 0.5:
            raise ValueError(f"--shift must be at least 0 and below 0.5 (a share of the frame size), not {self.shift}.")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"--micro-batch-size must be at least 1, not {self.micro_batch_size}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}.")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, not {self.device!r}.")
        for name, value in RECIPES[self.dataset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.spec  # noqa: B018 - validates frames and image_size

    def resolve_schedule(self, num_train: int) -> None:
        """Fill in the epochs and batch size that the recipe leaves to the data (`num_train` clips):
        batches of about an eighth of the clips (8 to 32); end to end 15 epochs, with a frozen
        backbone as many as `MIN_HEAD_STEPS` steps take (15 to 200)."""
        if self.batch_size is None:
            self.batch_size = min(MAX_BATCH, max(MIN_BATCH, 2 ** int(math.log2(max(1, num_train // 8)))))
        if self.epochs is None:
            steps = max(1, math.ceil(num_train / self.batch_size))
            self.epochs = MIN_EPOCHS if self.end_to_end else \
                min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_HEAD_STEPS / steps)))

    @property
    def end_to_end(self) -> bool:
        return self.finetune or self.backbone_weights == "none"

    @property
    def on_the_fly(self) -> bool:
        """Training clips decoded afresh each epoch: asked for, and end to end (features are cached)."""
        return self.decode_on_the_fly and self.end_to_end

    @property
    def spec(self) -> ClipSpec:
        return ClipSpec(self.frames, self.image_size)

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of a field (None where the dataset's recipe decides)."""
        return next(f.default for f in fields(cls) if f.name == name)


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """Training settings from a file: TOML (keys named as TrainConfig's fields, at the top or in a
    [train] table) or the config.json a run wrote (its "train" part). ValueError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such settings file.")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as {'TOML' if path.suffix.lower() == '.toml' else 'JSON'} "
                         f"({exc}).") from None
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]  # a run's config.json, or a TOML [train] table
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds no settings (expected a table of names and values).")
    known = {field.name for field in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    return data
