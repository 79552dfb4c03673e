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
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from actionrec.datasets import DATASET_KINDS, DATASET_LIMITS, DatasetKind
from actionrec.modelfile.card import TEMPORAL_HEADS, TRAINABLE_HEADS
from actionrec.video.spec import ClipSpec

TRAINING_LIMITS = DATASET_LIMITS  # dataset files are trusted more than uploads: long videos are allowed

TrainingPrecision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[TrainingPrecision, ...] = get_args(TrainingPrecision)
DEFAULT_SHIFT = 0.125
# Settings that say where a run goes and what memory it takes, not what it learns: a run may resume
# under other values of these.
RUNTIME_SETTINGS = ("out", "cache_dir", "device", "precision", "workers", "micro_batch_size", "ray", "ray_address")

# Sized so that feature extraction for UCF101 split 1 fits in about an hour on 2 CPU cores. A folder's
# epochs and batch size (None here) follow the number of training clips: see TrainConfig.resolve_schedule.
RECIPES: dict[str, dict[str, Any]] = {
    "folder": dict(epochs=None, batch_size=None, train_views=None, test_views=None, flip=False),
    "ucf101": dict(epochs=20, batch_size=64, train_views=2, test_views=2, flip=True),
}
# A folder dataset's schedule. A fixed 15 epochs of batch 32 gave a 70-clip dataset 45 optimiser steps,
# after which its training accuracy was still 77%: a head on frozen features (a step takes
# milliseconds) now trains for at least MIN_HEAD_STEPS steps, in batches of about an eighth of the clips.
MIN_EPOCHS, MAX_EPOCHS = 15, 200
MIN_HEAD_STEPS = 600
MIN_BATCH, MAX_BATCH = 8, 32
# A small folder dataset's views: with a frozen backbone, up to SMALL_DATASET training clips cache
# SMALL_VIEWS views each (one drawn per epoch) and validation averages as many. On the Weizmann clips
# (56 training clips a fold, actors held out) 4 and 4 took the motion head from 84.3% to 90.0% at the
# last epoch; the views cost feature extraction time alone, so a large dataset keeps one.
SMALL_DATASET, SMALL_VIEWS = 2000, 4


def _setting(default: Any = MISSING, help: str = "", **cli: Any) -> Any:
    """A TrainConfig field and how `actionrec train` offers it (see actionrec.cli.config_options): its
    help; where needed `choices`, `flags` (Click's declarations), `path`, `argument`, `shown_default`
    (what --help shows where the field's default is None), or `cli=False` (not an option)."""
    return field(default=default, metadata={"help": help, **cli})


_SMALL_VIEWS_HELP = (f"from the data: {SMALL_VIEWS} with a frozen backbone and at most {SMALL_DATASET} training "
                     "clips, else 1")


def _recipe(name: str, data: str = "") -> str:
    """The default --help shows for a setting the dataset's recipe gives (`data`: where the data decides)."""
    def shown(value: Any) -> str:
        return ("on" if value else "off") if isinstance(value, bool) else str(value)

    folder, ucf101 = RECIPES["folder"][name], RECIPES["ucf101"][name]
    return f"{data if folder is None else shown(folder)}; UCF101: {shown(ucf101)}"


@dataclass
class TrainConfig:
    """Training settings. Each field is an option of `actionrec train` (`--name-with-dashes`), described
    by its metadata: see `_setting`."""

    data_dir: str = _setting(help="Dataset root: folder per class, or the UCF101 root with --dataset ucf101 (not "
                             "needed with --config or --resume when they give it).", argument=True, path=True)
    out: str = _setting(help="Run directory to write the model, config and metrics into.", flags=("--out", "-o"),
                        path=True)
    dataset: DatasetKind = _setting("folder", "Dataset kind.", choices=DATASET_KINDS)
    split: int = _setting(1, "UCF101's official split (1, 2 or 3), or the number in a folder's "
                          "trainlistNN/testlistNN.")
    val_fraction: float = _setting(0.2, "Folder datasets without train.txt/test.txt: the share of each class "
                                   "held out.")
    epochs: int | None = _setting(None, "Training epochs.", shown_default=_recipe(
        "epochs", f"from the data: a head on frozen features trains for at least {MIN_HEAD_STEPS} steps, "
                  f"{MIN_EPOCHS} to {MAX_EPOCHS} epochs, end to end {MIN_EPOCHS}"))
    frames: int = _setting(16, "Frames sampled per clip.")
    image_size: int = _setting(224, "Frame size in pixels (square), fed to MobileNetV2.")
    batch_size: int | None = _setting(None, "Clips per optimiser step.", shown_default=_recipe(
        "batch_size", f"about an eighth of the training clips, {MIN_BATCH} to {MAX_BATCH}"))
    lr: float = _setting(1e-3, "Peak learning rate (AdamW, warm-up then cosine decay).")
    weight_decay: float = _setting(0.05, "AdamW weight decay.")
    label_smoothing: float = _setting(0.1, "Label smoothing of the loss.", cli=False)
    backbone_weights: str = _setting("imagenet", "imagenet | none (random: trains end to end) | PATH to "
                                     "MobileNetV2 weights.")
    temporal: str = _setting("motion", "What reads the frame features. " + "; ".join(
        f"{name}: {TEMPORAL_HEADS[name].description}" for name in TRAINABLE_HEADS) + ".", choices=TRAINABLE_HEADS)
    finetune: bool = _setting(False, "Train the backbone too (implied by --backbone-weights none).")
    width_mult: float = _setting(1.0, "MobileNetV2 width multiplier (ImageNet weights exist for 1.0 only).")
    hidden_size: int = _setting(512, "LSTM / MLP hidden size.")
    dropout: float = _setting(0.5, "Dropout in the head.")
    train_views: int | None = _setting(None, "Temporal clips cached per training video; one is drawn each "
                                       "epoch.", shown_default=_recipe("train_views", _SMALL_VIEWS_HELP))
    test_views: int | None = _setting(None, "Clips averaged per validation video.",
                                      shown_default=_recipe("test_views", _SMALL_VIEWS_HELP))
    flip: bool | None = _setting(None, "Mirror random training views (not where left/right is the label).",
                                 shown_default=_recipe("flip"))
    # None: DEFAULT_SHIFT end to end (measured: 52% -> 69% held out on synth data), 0 with a frozen backbone
    shift: float | None = _setting(None, "End to end: move each training clip (all its frames alike) by up to "
                                   "this share of its size, afresh every epoch.",
                                   shown_default=f"{DEFAULT_SHIFT} end to end, 0 with a frozen backbone")
    seed: int = _setting(0, "Fixes the split, views, initialisation and order.")
    cache_dir: str | None = _setting(None, "Where cached frames/features go.", path=True,
                                     shown_default="~/.cache/actionrec or $ACTIONREC_CACHE")
    device: str = _setting("auto", "auto (a GPU when PyTorch sees one), cpu, cuda or cuda:N.")
    precision: str = _setting("auto", "auto: bf16 on GPUs that have it, else fp16; fp32 on a CPU.",
                              choices=PRECISIONS)
    workers: int | None = _setting(None, "Processes that decode clips (and load batches when decoding on the "
                                   "fly).", shown_default="one per core")
    micro_batch_size: int | None = _setting(None, "Clips per forward/backward pass; a batch's gradients are "
                                            "summed over its micro-batches: the same batch in less memory "
                                            "(fine-tuning at 224 px takes about 1.3 GB per 16-frame clip).",
                                            shown_default="the whole batch")
    ray: bool = _setting(False, "Build the cache (decoding, frozen features) on Ray: a local Ray, or the cluster "
                         "at --ray-address or $RAY_ADDRESS. Needs the ray extra; the dataset and --cache-dir on "
                         "storage every node sees.")
    ray_address: str | None = _setting(None, "A Ray cluster to join (ray://HOST:10001 or HOST:6379).")
    decode_on_the_fly: bool = _setting(False, "End to end: decode a fresh random view of each clip every epoch "
                                       "instead of caching frames (no frame cache on disk; needs decoding speed).",
                                       flags=("--decode-on-the-fly/--cache-frames",))

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_KINDS:
            raise ValueError(f"--dataset must be 'folder' or 'ucf101', not {self.dataset!r}.")
        if self.temporal not in TRAINABLE_HEADS:
            raise ValueError(f"--temporal must be {' or '.join(map(repr, TRAINABLE_HEADS))}, not {self.temporal!r}.")
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
        """Fill in what the recipe leaves to the data (`num_train` clips): batches of about an eighth
        of the clips (8 to 32); end to end 15 epochs, with a frozen backbone as many as
        `MIN_HEAD_STEPS` steps take (15 to 200); views per clip (`SMALL_VIEWS` for a small dataset on
        a frozen backbone, else 1)."""
        if self.batch_size is None:
            self.batch_size = min(MAX_BATCH, max(MIN_BATCH, 2 ** int(math.log2(max(1, num_train // 8)))))
        small = not self.end_to_end and num_train <= SMALL_DATASET
        if self.train_views is None:
            self.train_views = SMALL_VIEWS if small else 1
        if self.test_views is None:
            self.test_views = SMALL_VIEWS if small else 1
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


_Value = TypeVar("_Value")


def resolved(value: _Value | None, setting: str) -> _Value:
    """A setting that defaults to None until its dataset's recipe (in TrainConfig.__post_init__) or
    `TrainConfig.resolve_schedule` fills it in, read where that has happened."""
    if value is None:
        raise RuntimeError(f"the training setting {setting!r} is read before the recipe or the schedule set it")
    return value


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
