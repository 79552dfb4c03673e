"""Classification metrics for evaluated clips (accuracy, confusion matrix, per-class breakdown),
and which epoch of a training history was the best.

Everything returned is plain Python (ints, floats, str, None, lists, dicts) so it can go
straight into JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MOST_CONFUSED_LIMIT = 10


def compute_metrics(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> dict:
    """Summarise predictions against true classes.

    `probs` is (N, C): class probabilities or any scores where higher means more likely.
    `targets` is (N,): the true class index of each clip. `labels` names the C classes.

    Returns a dict with `num_clips`, `top1`, `top5` (top-min(5, C)), `mean_class_accuracy`
    (over the classes that have clips), `confusion` (C x C counts, rows true, columns
    predicted), `labels`, `per_class` (worst accuracy first; classes without clips last, with
    accuracy None) and `most_confused` (the largest off-diagonal cells).
    """
    probs, targets, labels = _validated(probs, targets, labels)
    num_clips, num_classes = probs.shape

    predictions = probs.argmax(axis=1)
    top_k = min(5, num_classes)
    # Stable sort of negated scores: ties keep the lower class index first, like argmax.
    ranked = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    in_top_k = (ranked == targets[:, None]).any(axis=1)

    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (targets, predictions), 1)

    per_class = _per_class(confusion, labels)
    class_accuracies = [row["accuracy"] for row in per_class if row["accuracy"] is not None]

    return {
        "num_clips": int(num_clips),
        "top1": float(np.mean(predictions == targets)),
        "top5": float(np.mean(in_top_k)),
        "mean_class_accuracy": float(np.mean(class_accuracies)),
        "confusion": confusion.tolist(),
        "labels": labels,
        "per_class": per_class,
        "most_confused": _most_confused(confusion, labels),
    }


def _validated(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    labels = [str(label) for label in labels]

    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (N, C), got {probs.shape}")
    if targets.ndim != 1:
        raise ValueError(f"targets must have shape (N,), got {targets.shape}")
    if probs.shape[0] == 0:
        raise ValueError("cannot compute metrics on zero clips")
    if probs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"probs has {probs.shape[0]} rows but targets has {targets.shape[0]} entries"
        )
    if probs.shape[1] != len(labels):
        raise ValueError(f"probs has {probs.shape[1]} columns but there are {len(labels)} labels")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contains NaN or infinite values")

    if not np.issubdtype(targets.dtype, np.integer):
        if not np.issubdtype(targets.dtype, np.number) or np.any(targets != np.round(targets)):
            raise ValueError("targets must be integer class indices")
    targets = targets.astype(np.int64)
    if targets.min() < 0 or targets.max() >= len(labels):
        raise ValueError(f"targets must be class indices in [0, {len(labels) - 1}]")
    return probs, targets, labels


def _per_class(confusion: np.ndarray, labels: list[str]) -> list[dict]:
    rows = []
    for index, label in enumerate(labels):
        counts = confusion[index]
        support = int(counts.sum())
        accuracy = float(counts[index] / support) if support else None

        mistakes = counts.copy()
        mistakes[index] = 0
        worst = int(mistakes.argmax())
        top_count = int(mistakes[worst])
        rows.append(
            {
                "label": label,
                "support": support,
                "accuracy": accuracy,
                "top_confusion": labels[worst] if top_count else None,
                "top_confusion_count": top_count,
            }
        )

    def worst_first(item: tuple[int, dict]) -> tuple:
        index, row = item
        no_clips = row["accuracy"] is None
        return (no_clips, row["accuracy"] or 0.0, -row["support"], index)

    return [row for _, row in sorted(enumerate(rows), key=worst_first)]


def _most_confused(confusion: np.ndarray, labels: list[str]) -> list[dict]:
    supports = confusion.sum(axis=1)
    off_diagonal = confusion.copy()
    np.fill_diagonal(off_diagonal, 0)
    true_indices, predicted_indices = np.nonzero(off_diagonal)
    counts = off_diagonal[true_indices, predicted_indices]
    fractions = counts / supports[true_indices]
    # Most clips first; among equal counts, the larger share of the true class first.
    order = np.lexsort((predicted_indices, true_indices, -fractions, -counts))[:MOST_CONFUSED_LIMIT]
    return [
        {
            "true": labels[true_indices[i]],
            "predicted": labels[predicted_indices[i]],
            "count": int(counts[i]),
            "fraction_of_true": float(fractions[i]),
        }
        for i in order
    ]


# --------------------------------------------------------------------------- training history


def best_epoch_index(history: list[dict]) -> int | None:
    """Index into `history` of the best epoch: highest val_acc, else lowest val_loss.

    The one definition of "best", used by training (which weights to keep), evaluation, export
    (the accuracy a model file reports) and the report's curves.
    """
    for key, better in (("val_acc", max), ("val_loss", min)):
        values = [(v, i) for i, v in enumerate(finite_number(entry.get(key)) for entry in history) if v is not None]
        if values:
            # Earliest epoch wins a tie: max/min on (value, index) would pick the last for max.
            target = better(v for v, _ in values)
            return next(i for v, i in values if v == target)
    return None


def finite_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
