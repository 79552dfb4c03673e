"""The evaluation report's images: the confusion matrix and the training curves, as PNG files.

matplotlib is imported inside the plotting functions, and only its object API is used (no
pyplot), so importing this module is cheap and no global backend state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actionrec.evaluation.scores import best_epoch_index, finite_number
from actionrec.files import atomic_output

# Up to this many classes the confusion matrix shows the count in every cell.
MAX_CLASSES_WITH_COUNTS = 20
MAX_TICK_LABEL_CHARS = 28


# --- confusion matrix ---------------------------------------------------------------------


@dataclass(frozen=True)
class _ConfusionSizes:
    """How large the confusion figure is drawn, so that every class name stays readable."""

    show_counts: bool
    matrix_inches: float
    cell_points: float
    tick_size: float
    tick_labels: list[str]
    label_inches: float


def _confusion_sizes(labels: Sequence[str]) -> _ConfusionSizes:
    num_classes = len(labels)
    show_counts = num_classes <= MAX_CLASSES_WITH_COUNTS
    cell_inches = 0.55 if show_counts else 0.17
    matrix_inches = max(5.0, cell_inches * num_classes)
    cell_points = matrix_inches / num_classes * 72
    tick_size = min(10.0, max(4.5, cell_points * 0.62))
    tick_labels = [_shorten(str(label), MAX_TICK_LABEL_CHARS) for label in labels]
    longest = max((len(label) for label in tick_labels), default=1)
    # Rough width of the longest tick label: a character is ~0.6 em in DejaVu Sans.
    label_inches = longest * tick_size * 0.6 / 72 + 0.5
    return _ConfusionSizes(show_counts, matrix_inches, cell_points, tick_size, tick_labels, label_inches)


def plot_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str], path: Path) -> None:
    """Row-normalised confusion matrix, sized so every class name stays readable."""
    import matplotlib
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=np.int64)
    num_classes = len(labels)
    supports = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.where(supports > 0, counts / supports, np.nan)
    sizes = _confusion_sizes(labels)

    fig = Figure(
        figsize=(sizes.matrix_inches + sizes.label_inches + 1.4, sizes.matrix_inches + sizes.label_inches + 0.8),
        layout="constrained",
    )
    ax = fig.add_subplot()
    # Grey for the rows of classes without clips (their fractions are NaN).
    colormap = matplotlib.colormaps["Blues"].with_extremes(bad="#e6e6e6")
    # A square-root scale keeps a single misclassified clip visible in a class of 50.
    image = ax.imshow(
        fractions,
        cmap=colormap,
        norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0),
        interpolation="nearest",
        aspect="equal",
    )
    _label_confusion_axes(ax, num_classes, sizes)
    if sizes.show_counts:
        _write_cell_counts(ax, counts, fractions, sizes.cell_points)
    _add_confusion_colorbar(fig, ax, image, sizes.matrix_inches)

    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110 if num_classes > 60 else 120, facecolor="white")


def _label_confusion_axes(ax, num_classes: int, sizes: _ConfusionSizes) -> None:
    """Class names on both axes, titles, and thin separators between the cells."""
    ticks = np.arange(num_classes)
    ax.set_xticks(ticks, sizes.tick_labels, rotation=90, fontsize=sizes.tick_size)
    ax.set_yticks(ticks, sizes.tick_labels, fontsize=sizes.tick_size)
    ax.tick_params(length=2 if num_classes > MAX_CLASSES_WITH_COUNTS else 3, width=0.5)
    ax.set_xlabel("Predicted class", fontsize=11)
    ax.set_ylabel("True class", fontsize=11)
    ax.set_title("Confusion matrix (each row sums to 1)", fontsize=13, pad=10)

    # Thin separators so a row or column can be followed across a large matrix.
    ax.set_xticks(ticks[:-1] + 0.5, minor=True)
    ax.set_yticks(ticks[:-1] + 0.5, minor=True)
    ax.grid(which="minor", color="#d0d7de", linewidth=0.3 if num_classes > 40 else 0.6)
    ax.tick_params(which="minor", length=0)
    for spine in ax.spines.values():
        spine.set_color("#8c959f")


def _write_cell_counts(ax, counts: np.ndarray, fractions: np.ndarray, cell_points: float) -> None:
    """The number of clips in every cell, legible on light and dark cells alike."""
    num_classes = len(counts)
    count_size = min(11.0, max(6.0, cell_points * 0.38))
    for row in range(num_classes):
        for col in range(num_classes):
            value = int(counts[row, col])
            # White text once the cell colour is past the middle of the (sqrt) colormap.
            dark_cell = not math.isnan(fractions[row, col]) and fractions[row, col] > 0.4
            color = "white" if dark_cell else ("#1f2328" if value else "#b0b7be")
            ax.text(col, row, str(value), ha="center", va="center", fontsize=count_size,
                    color=color)


def _add_confusion_colorbar(fig, ax, image, matrix_inches: float) -> None:
    colorbar = fig.colorbar(image, ax=ax, shrink=min(0.8, 4.0 / matrix_inches + 0.4), pad=0.02)
    colorbar.set_ticks([0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0])
    colorbar.set_label("Fraction of the true class's clips (square-root scale)", fontsize=10)
    colorbar.ax.tick_params(labelsize=9)


# --- training curves ----------------------------------------------------------------------


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, train and validation, with the best epoch marked."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    numbers = [finite_number(entry.get("epoch")) for entry in history]
    epochs = [epoch if epoch is not None else i + 1 for i, epoch in enumerate(numbers)]
    scale = accuracy_scale(series(history, "train_acc") + series(history, "val_acc"))
    best = best_epoch_index(history)

    fig = Figure(figsize=(11.5, 4.2), layout="constrained")
    loss_ax, accuracy_ax = fig.subplots(1, 2, sharex=True)
    _draw_panel(loss_ax, "Loss", epochs, history, "loss", 1.0, best)
    _draw_panel(accuracy_ax, "Accuracy", epochs, history, "acc", scale, best)
    accuracy_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, facecolor="white")


def _draw_panel(ax, name: str, epochs: list[float], history: list[dict], quantity: str,
                scale: float, best: int | None) -> None:
    from matplotlib.ticker import MaxNLocator

    marker = "o" if len(epochs) <= 40 else None
    validation: list[float | None] = []
    plotted = False
    for split, legend, color in (("train", "train", "#0969da"), ("val", "validation", "#cf222e")):
        values = [v / scale if v is not None else None
                  for v in series(history, f"{split}_{quantity}")]
        if split == "val":
            validation = values
        points = [(epoch, v) for epoch, v in zip(epochs, values) if v is not None]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker=marker, markersize=3.5, linewidth=1.8, color=color,
                    label=legend)
            plotted = True

    if best is not None:
        best_value = validation[best]
        label = f"best epoch {format_epoch(epochs[best])}"
        if best_value is not None:
            shown = percent(best_value) if quantity == "acc" else f"{best_value:.3f}"
            label += f": val. {shown}"
            ax.plot([epochs[best]], [best_value], marker="*", markersize=14, color="#bf8700",
                    markeredgecolor="#7d4e00", zorder=5, linestyle="none")
        ax.axvline(epochs[best], color="#57606a", linestyle="--", linewidth=1.0, label=label)

    if not plotted:
        ax.text(0.5, 0.5, f"no {name.lower()} recorded", transform=ax.transAxes,
                ha="center", va="center", color="#57606a")
    ax.set_title(name, fontsize=12)
    ax.set_xlabel("Epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(color="#d0d7de", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    if plotted or best is not None:
        ax.legend(frameon=False, fontsize=9)


# --- what the images and the page both show ------------------------------------------------


def series(history: list[dict], key: str) -> list[float | None]:
    """`key`'s value in each epoch of `history`, None where missing or not a finite number."""
    return [finite_number(entry.get(key)) for entry in history]


def accuracy_scale(values: list[float | None]) -> float:
    """Accuracies are fractions; tolerate a history that records them in percent."""
    present = [v for v in values if v is not None]
    return 100.0 if present and max(present) > 1.5 else 1.0


def percent(fraction: float | None) -> str:
    """A fraction as a percentage with one decimal; a dash for None."""
    return "\u2014" if fraction is None else f"{fraction * 100:.1f}%"


def format_epoch(epoch: float) -> str:
    """An epoch number as written: 3, not 3.0; 2.5 as it is."""
    return str(int(epoch)) if float(epoch).is_integer() else f"{epoch:g}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
