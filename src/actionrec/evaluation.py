"""Evaluating an exported model file on a dataset's validation clips, without torch.

The clips are read as a prediction reads them (segment centres) and run through ONNX Runtime, so
what this measures is what `serve` and `predict` answer. Two files evaluated on the same clips
(an fp32 model and its int8 copy) give each one's accuracy and how often they agree.
`measure_unknown_rule` measures, the same way, a model's threshold for "none of these".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actionrec.datasets import Sample, evenly, load_dataset
from actionrec.errors import ModelFileError, VideoError
from actionrec.inference import Recognizer
from actionrec.training.config import TRAINING_LIMITS
from actionrec.training.metrics import compute_metrics
from actionrec.unknown import UnknownRule, calibrate, class_means
from actionrec.video import read_clip

CLASS_MEAN_CLIPS = 16  # training clips per class whose features make its mean (measured: 8 do nearly as well)


@dataclass
class Clips:
    """Validation clips, decoded once for every model with the same frames and size."""

    samples: list[Sample]
    frames: list[np.ndarray]
    targets: np.ndarray  # each clip's class, as an index into `labels`
    labels: list[str]
    failed: dict[Path, str]


def validation_clips(data_dir: str | os.PathLike, recognizer: Recognizer, *, dataset: str = "folder",
                     split: int = 1, val_fraction: float = 0.2, seed: int = 0, limit: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> Clips:
    """Decode (up to `limit`, spread over the classes) validation clips of a dataset as the model
    reads them. The dataset's split settings must be those the model was trained with."""
    split_set = load_dataset(data_dir, kind=dataset, split=split, val_fraction=val_fraction,  # type: ignore[arg-type]
                             seed=seed)
    missing = [name for name in split_set.classes if name not in recognizer.labels]
    if missing:
        raise ModelFileError(f"{recognizer.model_path}: the model has no class {missing[0]!r} of {data_dir} "
                             f"({len(missing)} of the dataset's classes are not among its labels).")
    samples = evenly(split_set.val, limit)
    kept, frames, failed = [], [], {}
    for done, sample in enumerate(samples, 1):
        try:
            frames.append(read_clip(sample.path, recognizer.spec, limits=TRAINING_LIMITS).frames)
            kept.append(sample)
        except VideoError as exc:
            failed[sample.path] = str(exc)
        if progress:
            progress(done, len(samples))
    targets = np.array([recognizer.labels.index(split_set.classes[s.label]) for s in kept], dtype=np.int64)
    return Clips(kept, frames, targets, list(recognizer.labels), failed)


def class_probabilities(recognizer: Recognizer, clips: Clips, batch_size: int = 8) -> np.ndarray:
    """(clips, classes) probabilities from `recognizer` (whose labels must be `clips.labels`)."""
    if list(recognizer.labels) != clips.labels:
        raise ModelFileError(f"{recognizer.model_path}: its labels differ from the model the clips were read for.")
    if not clips.frames:
        return np.zeros((0, len(clips.labels)), np.float32)
    return np.concatenate([recognizer.classify(np.stack(clips.frames[i : i + batch_size]))
                           for i in range(0, len(clips.frames), batch_size)])


def evaluate_files(models: list[Recognizer], clips: Clips) -> dict[str, Any]:
    """Metrics of each model on the same clips and, for two or more, how often each agrees with
    the first on the top class."""
    results: dict[str, Any] = {"num_clips": len(clips.samples), "failed": {str(p): e for p, e in clips.failed.items()},
                               "models": []}
    first: np.ndarray | None = None
    for model in models:
        probs = class_probabilities(model, clips)
        metrics = compute_metrics(probs, clips.targets, clips.labels) if len(probs) else {}
        entry = {"model": str(model.model_path), "top1": metrics.get("top1"), "top5": metrics.get("top5"),
                 "mean_class_accuracy": metrics.get("mean_class_accuracy"), "metrics": metrics}
        if first is None:
            first = probs.argmax(-1)
        else:
            entry["agreement_with_first"] = float((probs.argmax(-1) == first).mean()) if len(probs) else None
        results["models"].append(entry)
    return results


def clip_evidence(recognizer: Recognizer, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, (T, F) frame features) of one (T, S, S, 3) clip, as a prediction computes them."""
    features = recognizer.encode(np.ascontiguousarray(frames))
    return recognizer.head(features[None])[0], features


def measure_unknown_rule(recognizer: Recognizer, data_dir: str | os.PathLike, *, dataset: str = "folder",
                         split: int = 1, val_fraction: float = 0.2, seed: int = 0, limit: int | None = 500,
                         cached_features: Callable[[Path], np.ndarray | None] | None = None,
                         progress: Callable[[int, int], None] | None = None) -> UnknownRule:
    """The "none of these" rule of a model trained on `data_dir` with these split settings: class
    means from the features of its training clips, and the threshold that puts `KNOWN_FLAGGED` of
    (up to `limit`) validation clips under it. Clips stream: one in memory at a time.

    `cached_features` gives a training clip's (T, F) features where training kept them (a frozen
    backbone's, at segment centres: what the encoder gives), so that every training clip counts;
    otherwise up to `CLASS_MEAN_CLIPS` clips of each class are decoded (the means are then less
    sure: measured, 69% of unknown clips flagged with means of 16 clips against 90% with 24)."""
    if not recognizer.split:
        raise ModelFileError(f"{recognizer.model_path}: exported before the encoder and head were split, so "
                             "its frame features cannot be read; export it again.")
    split_set = load_dataset(data_dir, kind=dataset, split=split, val_fraction=val_fraction,  # type: ignore[arg-type]
                             seed=seed)
    missing = [name for name in split_set.classes if name not in recognizer.labels]
    if missing:
        raise ModelFileError(f"{recognizer.model_path}: the model has no class {missing[0]!r} of {data_dir}.")
    by_class: dict[int, list[Sample]] = {}
    for sample in split_set.train:
        by_class.setdefault(recognizer.labels.index(split_set.classes[sample.label]), []).append(sample)
    if sorted(by_class) != list(range(len(recognizer.labels))):
        raise ModelFileError(f"{recognizer.model_path}: {data_dir} has no training clips of some of its classes.")
    cached = {sample.path: features for sample in split_set.train
              if cached_features is not None and (features := cached_features(sample.path)) is not None}
    means_from = {label: [s for s in samples if s.path in cached] or list(evenly(samples, CLASS_MEAN_CLIPS))
                  for label, samples in by_class.items()}
    validation = list(evenly(split_set.val, limit))
    total, done = sum(map(len, means_from.values())) + len(validation), 0

    def evidence(samples: list[Sample]):
        nonlocal done
        for sample in samples:
            done += 1
            if sample.path in cached:
                yield None, cached[sample.path]
                continue
            try:
                frames = read_clip(sample.path, recognizer.spec, limits=TRAINING_LIMITS).frames
            except VideoError:
                continue  # training reported it
            finally:
                if progress:
                    progress(done, total)
            yield clip_evidence(recognizer, frames)

    means = class_means([[features for _, features in evidence(means_from[label])] or
                         [np.zeros((1, recognizer.card.num_features or 1), np.float32)]
                         for label in range(len(recognizer.labels))])
    cached.clear()  # validation clips are read as a prediction reads them
    return calibrate(means, evidence(validation), f"validation clips of {Path(data_dir).name}")


def rule_on_clips(recognizer: Recognizer, means: np.ndarray, clips: Clips, calibrated_on: str) -> UnknownRule:
    """The feature-similarity rule for `recognizer` with these class `means`, its threshold measured
    on decoded `clips` (for the int8 copy of a model, on the clips its fp32 original was compared on)."""
    return calibrate(means, (clip_evidence(recognizer, frames) for frames in clips.frames), calibrated_on)
