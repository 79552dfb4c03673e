"""Evaluate a trained run on its validation split (or another dataset) and write the report."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from actionrec.data import load_dataset
from actionrec.metrics import compute_metrics
from actionrec.report import write_report
from actionrec.train import TrainingError, _load_arrays, build_cache, load_run, predict_arrays


def evaluate_run(
    run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, console: Console | None = None
) -> tuple[dict, Path]:
    """Returns (metrics, path of report.html). Writes metrics.json and the report's images too."""
    console = console or Console()
    run_dir = Path(run_dir)
    model, config, saved = load_run(run_dir)
    if data_dir is not None:
        config = replace(config, data_dir=str(data_dir))
    dataset = load_dataset(config.data_dir, kind=config.dataset, split=config.split,
                           val_fraction=config.val_fraction, seed=config.seed)
    if dataset.classes != saved["labels"]:
        raise TrainingError(
            f"{config.data_dir}: its classes differ from the ones this model was trained on "
            f"({len(dataset.classes)} vs {len(saved['labels'])}); evaluate on a dataset with the same class folders."
        )
    cache, samples, _ = build_cache(config, model, dataset.val, config.test_views, saved["backbone_id"],
                                    console, "Caching evaluation clips")
    if not samples:
        raise TrainingError(f"{config.data_dir}: no readable validation clips to evaluate on.")
    arrays, targets = _load_arrays(cache, samples)
    probs = predict_arrays(model, arrays, config.end_to_end, config.batch_size)
    metrics = compute_metrics(probs, targets.numpy(), saved["labels"])

    history_path = run_dir / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else None
    best = max(history or [], key=lambda row: row["val_acc"], default={})
    details = {
        "run": str(run_dir),
        "dataset": dataset.description,
        "model": f"MobileNetV2 ({saved['backbone_id']}) + {config.temporal} head",
        "trained": "end to end" if config.end_to_end else "head only (frozen backbone)",
        "frames x size": f"{config.frames} x {config.image_size}px",
        "views averaged": config.test_views,
        "best epoch": best.get("epoch"),
    }
    report = write_report(run_dir, metrics, history, title=f"Evaluation: {run_dir.name}", details=details)
    np.save(run_dir / "val_probabilities.npy", probs)
    return metrics, report
