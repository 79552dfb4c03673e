"""Evaluate a trained run on its validation split (or another dataset) and write the report."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from actionrec.datasets import load_dataset
from actionrec.errors import TrainingError
from actionrec.evaluation.scores import compute_metrics
from actionrec.files import atomic_output
from actionrec.training.config import resolved
from actionrec.training.devices import Runtime
from actionrec.training.features import build_cache, extractor_for
from actionrec.training.report import write_report
from actionrec.training.runs import RunDir
from actionrec.training.steps import Side, predict_arrays


def evaluate_run(
    run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, console: Console | None = None
) -> tuple[dict, Path]:
    """Returns (metrics, path of report.html). Writes metrics.json and the report's images too."""
    console = console or Console()
    run = RunDir(run_dir)
    model, config, labels = run.load_model(), run.config, run.labels
    if data_dir is not None:
        config = replace(config, data_dir=str(data_dir))
    dataset = load_dataset(config.data_dir, kind=config.dataset, split=config.split,
                           val_fraction=config.val_fraction, seed=config.seed)
    if dataset.classes != labels:
        raise TrainingError(
            f"{config.data_dir}: its classes differ from the ones this model was trained on "
            f"({len(dataset.classes)} vs {len(labels)}); evaluate on a dataset with the same class folders."
        )
    views = resolved(config.test_views, "test_views")
    cache, samples, _ = build_cache(config, dataset.val, views, run.backbone_id, console,
                                    "Caching evaluation clips", extractor_for(config, model, run.backbone_id, console))
    if not samples:
        raise TrainingError(f"{config.data_dir}: no readable validation clips to evaluate on.")
    probs = predict_arrays(model, Side(samples, cache, views), config, Runtime())
    metrics = compute_metrics(probs, np.array([sample.label for sample in samples]), labels)

    best = run.best_epoch() or {}
    details = {
        "run": str(run.path),
        "dataset": dataset.description,
        "model": f"MobileNetV2 ({run.backbone_id}) + {config.temporal} head",
        "trained": "end to end" if config.end_to_end else "head only (frozen backbone)",
        "frames x size": f"{config.frames} x {config.image_size}px",
        "views averaged": config.test_views,
        "best epoch": best.get("epoch"),
    }
    report = write_report(run.path, metrics, run.history() or None, title=f"Evaluation: {run.path.name}",
                          details=details)
    with atomic_output(run.path / "val_probabilities.npy") as tmp:
        np.save(tmp, probs)
    return metrics, report
