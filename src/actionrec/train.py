"""Training: cache what the frozen part computes once, then train the rest for many cheap epochs.

Frozen backbone (the default, transfer learning): each clip's frame features are extracted once
and cached; epochs train the temporal head on the cache and take seconds.
End to end (`finetune`, implied by `backbone_weights="none"`): each clip's decoded frames are
cached; epochs run the whole model.

A run directory holds:
    config.json        everything needed to rebuild the model and reproduce the run
    model.safetensors  the best epoch's weights (by validation accuracy)
    history.json/.csv  per-epoch loss, accuracy, learning rate and time
    train_state.pt     the last completed epoch, for --resume (tensors only, loaded weights_only)
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from actionrec import __version__
from actionrec.cache import ClipCache, atomic_output, default_cache_root, prefetch
from actionrec.data import DatasetSplit, Sample, load_dataset
from actionrec.errors import ActionrecError, VideoError
from actionrec.model import ActionModel, ModelConfig, load_backbone_weights
from actionrec.video import ClipSpec, DecodeLimits, read_views

TRAINING_LIMITS = DecodeLimits(max_duration_s=3 * 3600.0)  # dataset files are trusted more than uploads


class TrainingError(ActionrecError):
    pass


@dataclass
class TrainConfig:
    data_dir: str
    out: str
    dataset: str = "folder"  # "folder" or "ucf101"
    split: int = 1
    val_fraction: float = 0.2
    epochs: int = 15
    frames: int = 16
    image_size: int = 224
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    backbone_weights: str = "imagenet"
    temporal: str = "lstm"
    finetune: bool = False
    width_mult: float = 1.0
    hidden_size: int = 512
    dropout: float = 0.5
    train_views: int = 1  # temporal clips cached per training video; one is drawn each epoch
    test_views: int = 1  # clips averaged per validation video
    flip: bool = False  # horizontal flips as augmentation (wrong where left/right is the label)
    seed: int = 0
    cache_dir: str | None = None

    @property
    def end_to_end(self) -> bool:
        return self.finetune or self.backbone_weights == "none"

    @property
    def spec(self) -> ClipSpec:
        return ClipSpec(self.frames, self.image_size)


def recipe_defaults(dataset: str) -> dict:
    """Defaults that differ by dataset. UCF101's: several clips per video, flips, and test-time
    averaging, sized so that feature extraction for split 1 fits in about an hour on 2 CPU cores."""
    if dataset == "ucf101":
        return dict(epochs=20, batch_size=64, train_views=2, test_views=2, flip=True)
    return dict(epochs=15, batch_size=32, train_views=1, test_views=1, flip=False)


@dataclass
class Run:
    """What training produced, as recorded in the run directory."""

    run_dir: Path
    config: TrainConfig
    labels: list[str]
    best_epoch: int
    best_val_acc: float
    history: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------- data on disk


def _clip_rng(seed: int, video: Path) -> np.random.Generator:
    """Each video's own stream of random views, the same in every run with this seed."""
    digest = hashlib.sha1(str(video).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def _decode_views(config: TrainConfig, views: int) -> Callable[[Path], np.ndarray]:
    """(V, T, S, S, 3) frames of a video: view 0 at segment centres, the others random moments,
    each of those mirrored with probability 1/2 when `config.flip`."""

    def decode(video: Path) -> np.ndarray:
        rng = _clip_rng(config.seed, video)
        clips = read_views(video, config.spec, views=views, rng=rng, limits=TRAINING_LIMITS)
        frames = np.stack([c.frames for c in clips])
        if config.flip:
            for view in range(1, views):
                if rng.random() < 0.5:
                    frames[view] = frames[view, :, :, ::-1]
        return frames

    return decode


def feature_extractor(model: ActionModel, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """frames (N, T, S, S, 3) uint8 -> features (N, T, 1280) float16, run by ONNX Runtime.

    On two CPU cores ONNX Runtime runs MobileNetV2 several times faster than eager PyTorch
    (`actionrec benchmark` measures both), and this is most of the time a frozen-backbone run
    takes. Falls back to PyTorch if the export does not reproduce PyTorch's features.
    """
    import onnxruntime as ort

    from actionrec.export import to_onnx
    from actionrec.model import FrameFeatures

    wrapped = FrameFeatures(model).eval()

    def with_torch(frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return wrapped(torch.from_numpy(np.ascontiguousarray(frames))).to(torch.float16).numpy()

    path = folder / "frame_features.onnx"
    try:
        if not path.exists():
            example = torch.randint(0, 256, (2, 2, 32, 32, 3), dtype=torch.uint8)
            with atomic_output(path) as tmp:
                to_onnx(wrapped, example, tmp, "frames", "features",
                        {"frames": {0: "n", 1: "t", 2: "h", 3: "w"}, "features": {0: "n", 1: "t"}})
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        probe = np.random.default_rng(0).integers(0, 256, (1, 2, 64, 64, 3), dtype=np.uint8)
        if np.abs(session.run(None, {"frames": probe})[0] - with_torch(probe).astype(np.float32)).max() > 1e-2:
            return with_torch
    except Exception:  # an exporter or runtime problem costs speed, not correctness
        return with_torch
    return lambda frames: session.run(None, {"frames": np.ascontiguousarray(frames)})[0].astype(np.float16)


def cache_for(config: TrainConfig, views: int, backbone_id: str) -> ClipCache:
    settings = {
        "spec": config.spec.to_dict(),
        "views": views,
        "flip": config.flip,
        "seed": config.seed,
        "content": "frames" if config.end_to_end else f"features:{backbone_id}:w{config.width_mult}",
    }
    return ClipCache(Path(config.cache_dir) if config.cache_dir else default_cache_root(), settings)


def build_cache(
    config: TrainConfig,
    model: ActionModel,
    samples: list[Sample],
    views: int,
    backbone_id: str,
    console: Console,
    what: str,
) -> tuple[ClipCache, list[Sample], dict[Path, str]]:
    """Make sure every sample has its cached array. Returns the cache, usable samples, failures."""
    cache = cache_for(config, views, backbone_id)
    videos = [s.path for s in samples]
    missing = cache.missing(videos)
    failures: dict[Path, str] = {}
    if missing:
        decode = _decode_views(config, views)
        model.eval()
        extract = None if config.end_to_end else feature_extractor(model, cache.folder)
        started = time.perf_counter()
        with _progress(console) as progress:
            task = progress.add_task(f"{what}: {len(missing)} clips", total=len(missing), status="")
            for video, frames in prefetch(missing, decode):
                if isinstance(frames, VideoError):  # skip the clip, report it
                    failures[video] = str(frames)
                elif isinstance(frames, Exception):
                    raise frames
                elif config.end_to_end:
                    cache.put(video, frames)
                else:
                    cache.put(video, extract(frames))
                progress.advance(task)
        seconds = time.perf_counter() - started
        done = len(missing) - len(failures)
        console.print(
            f"{what}: {done} clips in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} clips/s, "
            f"{done * views * config.frames / max(seconds, 1e-9):.0f} frames/s; "
            f"{views} view(s) x {config.frames} frames at {config.image_size}px)"
        )
    for video, error in failures.items():
        console.print(f"[yellow]skipped[/yellow] {video}: {error}")
    usable = [s for s in samples if s.path not in failures]
    return cache, usable, failures


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _load_arrays(cache: ClipCache, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = np.stack([np.asarray(cache.get(s.path)) for s in samples])
    labels = torch.tensor([s.label for s in samples])
    return torch.from_numpy(arrays), labels


# --------------------------------------------------------------------------- the loop


def _forward(model: ActionModel, batch: torch.Tensor, end_to_end: bool) -> torch.Tensor:
    if end_to_end:
        return model(batch)
    return model.forward_head(batch.float())


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


def _lr_at(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def train(config: TrainConfig, *, resume: bool = False, console: Console | None = None) -> Run:
    console = console or Console()
    torch.manual_seed(config.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)

    dataset: DatasetSplit = load_dataset(
        config.data_dir, kind=config.dataset, split=config.split, val_fraction=config.val_fraction, seed=config.seed
    )
    for warning in dataset.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if not dataset.train or not dataset.val:
        raise TrainingError(f"{config.data_dir}: need clips for both training and validation ({dataset.description}).")
    console.print(
        f"{dataset.description}: {len(dataset.classes)} classes, {len(dataset.train)} training and "
        f"{len(dataset.val)} validation clips"
    )

    model_config = ModelConfig(
        num_classes=len(dataset.classes),
        temporal=config.temporal,
        hidden_size=config.hidden_size,
        dropout=config.dropout,
        width_mult=config.width_mult,
    )
    model = ActionModel(model_config)
    backbone_id = load_backbone_weights(model, config.backbone_weights)
    if config.backbone_weights == "none" and not config.finetune:
        console.print("Backbone weights 'none': random features are useless frozen, so the backbone is trained too.")

    train_cache, train_samples, train_failed = build_cache(
        config, model, dataset.train, config.train_views, backbone_id, console, "Caching training clips"
    )
    val_cache, val_samples, val_failed = build_cache(
        config, model, dataset.val, config.test_views, backbone_id, console, "Caching validation clips"
    )
    for side, usable, failed in (("training", train_samples, train_failed), ("validation", val_samples, val_failed)):
        if not usable:
            examples = "; ".join(f"{path.name}: {error}" for path, error in list(failed.items())[:2])
            raise TrainingError(f"none of the {len(failed)} {side} clips could be read ({examples}).")
    train_x, train_y = _load_arrays(train_cache, train_samples)
    val_x, val_y = _load_arrays(val_cache, val_samples)

    if not config.end_to_end:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    params = [
        {"params": [p for p in model.head.parameters()], "lr": config.lr},
    ]
    if config.end_to_end:
        backbone_lr = config.lr if config.backbone_weights == "none" else config.lr * 0.1
        params.append({"params": list(model.backbone.parameters()), "lr": backbone_lr})
    optimizer = torch.optim.AdamW(params, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_samples) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_at(step, total_steps, warmup=min(steps_per_epoch, total_steps // 10 + 1))
    )


    history: list[dict] = []
    start_epoch, best_acc, best_epoch = 1, -1.0, 0
    state_path = run_dir / "train_state.pt"
    generator = torch.Generator().manual_seed(config.seed)
    fingerprint = _fingerprint(config, dataset.classes)
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"{run_dir} holds a run with other settings or classes than these; --resume continues "
                "a run only with the settings it started with (--epochs may change). Use another --out."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        history = json.loads(state["history"])
        start_epoch, best_acc, best_epoch = state["epoch"] + 1, state["best_acc"], state["best_epoch"]
        console.print(f"Resuming after epoch {state['epoch']} (best so far {best_acc:.1%} at epoch {best_epoch}).")
    elif resume:
        console.print(f"No {state_path.name} in {run_dir}: starting from the first epoch.")
    _write_json(run_dir / "config.json", {
        "actionrec_version": __version__,
        "train": asdict(config),
        "model": model_config.to_dict(),
        "spec": config.spec.to_dict(),
        "labels": dataset.classes,
        "dataset": f"{Path(config.data_dir).name}: {dataset.description}",
        "backbone_id": backbone_id,
        "num_train": len(train_samples),
        "num_val": len(val_samples),
        "skipped": {str(k): v for k, v in {**train_failed, **val_failed}.items()},
    })
    (run_dir / "labels.txt").write_text("\n".join(dataset.classes) + "\n")

    with _progress(console) as progress:
        task = progress.add_task("Training", total=config.epochs, completed=start_epoch - 1, status="")
        for epoch in range(start_epoch, config.epochs + 1):
            started = time.perf_counter()
            model.train()
            if not config.end_to_end:
                model.backbone.eval()
            order = torch.randperm(len(train_samples), generator=generator)
            view_choice = torch.randint(train_x.shape[1], (len(train_samples),), generator=generator)
            loss_sum, correct = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                batch = train_x[idx, view_choice[idx]]
                target = train_y[idx]
                logits = _forward(model, batch, config.end_to_end)
                loss = F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(idx)
                correct += (logits.argmax(-1) == target).sum().item()

            val_probs = predict_arrays(model, val_x, config.end_to_end, config.batch_size)
            val_loss = float(F.nll_loss(torch.log(torch.from_numpy(val_probs).clamp_min(1e-8)), val_y))
            val_acc = float((val_probs.argmax(-1) == val_y.numpy()).mean())
            row = {
                "epoch": epoch,
                "train_loss": round(loss_sum / len(order), 5),
                "train_acc": round(correct / len(order), 5),
                "val_loss": round(val_loss, 5),
                "val_acc": round(val_acc, 5),
                "lr": float(f"{optimizer.param_groups[0]['lr']:.3g}"),
                "seconds": round(time.perf_counter() - started, 2),
            }
            history.append(row)
            if val_acc > best_acc:
                best_acc, best_epoch = val_acc, epoch
                _save_weights(model, run_dir / "model.safetensors")
            _write_history(run_dir, history)
            with atomic_output(state_path) as tmp:
                torch.save({
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "history": json.dumps(history),
                    "epoch": epoch,
                    "best_acc": best_acc,
                    "best_epoch": best_epoch,
                    "fingerprint": fingerprint,
                }, tmp)
            status = (f"loss {row['train_loss']:.3f} acc {row['train_acc']:.1%} | "
                      f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.1%}")
            progress.update(task, advance=1, status=status)
            progress.console.print(f"epoch {epoch:3d}/{config.epochs}  {status}  ({row['seconds']:.1f} s)")

    console.print(f"Best validation accuracy {best_acc:.1%} at epoch {best_epoch}; weights in {run_dir / 'model.safetensors'}")
    return Run(run_dir, config, dataset.classes, best_epoch, best_acc, history)


# --------------------------------------------------------------------------- run directory


def _fingerprint(config: TrainConfig, labels: list[str]) -> str:
    """What a resumed run must share with the run it continues: everything but the epoch count."""
    settings = asdict(config) | {"epochs": None, "out": None, "cache_dir": None}
    return hashlib.sha1(json.dumps([settings, labels], sort_keys=True).encode()).hexdigest()


def _save_weights(model: ActionModel, path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_output(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))


def _write_json(path: Path, data: object) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def _write_history(run_dir: Path, history: list[dict]) -> None:
    _write_json(run_dir / "history.json", history)
    with open(run_dir / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def load_run(run_dir: str | os.PathLike) -> tuple[ActionModel, TrainConfig, dict]:
    """Rebuild the trained model of a run directory. Returns (model in eval mode, config, config.json)."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise TrainingError(f"{run_dir}: no {path.name}; is this the --out folder of `actionrec train`?")
    saved = json.loads(config_path.read_text())
    config = TrainConfig(**saved["train"])
    model = ActionModel(ModelConfig(**saved["model"]))
    model.load_state_dict(load_file(str(weights_path)))
    return model.eval(), config, saved
