"""Evaluating an exported model file on a dataset's validation clips, without torch.

The clips are read as a prediction reads them (segment centres) and run through ONNX Runtime, so
what this measures is what `serve` and `predict` answer. Two files evaluated on the same clips
(an fp32 model and its int8 copy) give each one's accuracy and how often they agree.
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
from actionrec.video import read_clip


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
