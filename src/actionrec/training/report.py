"""Evaluation report: a confusion-matrix image, training curves, metrics.json and an HTML page.

The page references the images by relative file name, so a run directory can be moved or
served as a whole; it needs nothing else (no external CSS, scripts or fonts).

matplotlib is imported inside the plotting functions, and only its object API is used (no
pyplot), so importing this module is cheap and no global backend state is touched.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import string
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actionrec.files import atomic_output, write_json, write_text
from actionrec.training.metrics import best_epoch_index, finite_number

CONFUSION_IMAGE = "confusion.png"
CURVES_IMAGE = "curves.png"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"

TEMPLATE = string.Template((Path(__file__).parent / "report_template.html").read_text(encoding="utf-8"))

# Up to this many classes the confusion matrix shows the count in every cell.
MAX_CLASSES_WITH_COUNTS = 20
MAX_TICK_LABEL_CHARS = 28


def write_report(
    run_dir: str | os.PathLike,
    metrics: dict,
    history: list[dict] | None = None,
    *,
    title: str = "Evaluation report",
    details: dict | None = None,
) -> Path:
    """Write confusion.png, curves.png (when `history` has epochs), metrics.json and
    report.html into `run_dir`; return the path of report.html.

    `metrics` is what `actionrec.metrics.compute_metrics` returns. `history` holds one dict per
    epoch with any of `epoch`, `train_loss`, `train_acc`, `val_loss`, `val_acc`, `lr`,
    `seconds`. `details` is shown as a key/value table (model, dataset, split, ...).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    details = dict(details or {})
    history = list(history or [])

    plot_confusion(metrics["confusion"], metrics["labels"], run_dir / CONFUSION_IMAGE)
    if history:
        plot_curves(history, run_dir / CURVES_IMAGE)

    write_json(run_dir / METRICS_FILE, {**metrics, "details": details})
    report_path = run_dir / REPORT_FILE
    write_text(report_path, _render_html(title, metrics, history, details))
    return report_path


# --- images -------------------------------------------------------------------------------


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

    show_counts = num_classes <= MAX_CLASSES_WITH_COUNTS
    cell_inches = 0.55 if show_counts else 0.17
    matrix_inches = max(5.0, cell_inches * num_classes)
    cell_points = matrix_inches / num_classes * 72
    tick_size = min(10.0, max(4.5, cell_points * 0.62))
    tick_labels = [_shorten(str(label), MAX_TICK_LABEL_CHARS) for label in labels]
    longest = max((len(label) for label in tick_labels), default=1)
    # Rough width of the longest tick label: a character is ~0.6 em in DejaVu Sans.
    label_inches = longest * tick_size * 0.6 / 72 + 0.5

    fig = Figure(
        figsize=(matrix_inches + label_inches + 1.4, matrix_inches + label_inches + 0.8),
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

    ticks = np.arange(num_classes)
    ax.set_xticks(ticks, tick_labels, rotation=90, fontsize=tick_size)
    ax.set_yticks(ticks, tick_labels, fontsize=tick_size)
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

    if show_counts:
        count_size = min(11.0, max(6.0, cell_points * 0.38))
        for row in range(num_classes):
            for col in range(num_classes):
                value = int(counts[row, col])
                # White text once the cell colour is past the middle of the (sqrt) colormap.
                dark_cell = not math.isnan(fractions[row, col]) and fractions[row, col] > 0.4
                color = "white" if dark_cell else ("#1f2328" if value else "#b0b7be")
                ax.text(col, row, str(value), ha="center", va="center", fontsize=count_size,
                        color=color)

    colorbar = fig.colorbar(image, ax=ax, shrink=min(0.8, 4.0 / matrix_inches + 0.4), pad=0.02)
    colorbar.set_ticks([0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0])
    colorbar.set_label("Fraction of the true class's clips (square-root scale)", fontsize=10)
    colorbar.ax.tick_params(labelsize=9)

    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110 if num_classes > 60 else 120, facecolor="white")


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, train and validation, with the best epoch marked."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    epochs = [finite_number(entry.get("epoch")) for entry in history]
    epochs = [epoch if epoch is not None else i + 1 for i, epoch in enumerate(epochs)]
    accuracy_scale = _accuracy_scale(_series(history, "train_acc") + _series(history, "val_acc"))
    best = best_epoch_index(history)

    fig = Figure(figsize=(11.5, 4.2), layout="constrained")
    loss_ax, accuracy_ax = fig.subplots(1, 2, sharex=True)
    _draw_panel(loss_ax, "Loss", epochs, history, "loss", 1.0, best)
    _draw_panel(accuracy_ax, "Accuracy", epochs, history, "acc", accuracy_scale, best)
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
                  for v in _series(history, f"{split}_{quantity}")]
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
        label = f"best epoch {_format_epoch(epochs[best])}"
        if best_value is not None:
            shown = _percent(best_value) if quantity == "acc" else f"{best_value:.3f}"
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


def _series(history: list[dict], key: str) -> list[float | None]:
    return [finite_number(entry.get(key)) for entry in history]


def _accuracy_scale(values: list[float | None]) -> float:
    """Accuracies are fractions; tolerate a history that records them in percent."""
    present = [v for v in values if v is not None]
    return 100.0 if present and max(present) > 1.5 else 1.0


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _format_epoch(epoch: float) -> str:
    return str(int(epoch)) if float(epoch).is_integer() else f"{epoch:g}"


# --- HTML ---------------------------------------------------------------------------------


def _render_html(title: str, metrics: dict, history: list[dict], details: dict) -> str:
    labels = metrics["labels"]
    top_k = min(5, len(labels))
    classes_with_clips = sum(1 for row in metrics["per_class"] if row["support"])
    generated = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()

    headline = "".join(
        _stat(name, value, note)
        for name, value, note in (
            ("Top-1 accuracy", _percent(metrics["top1"]), "predicted class is correct"),
            (f"Top-{top_k} accuracy", _percent(metrics["top5"]),
             f"true class among the {top_k} highest scores"),
            ("Mean class accuracy", _percent(metrics["mean_class_accuracy"]),
             "average of per-class accuracies"),
            ("Clips", f"{metrics['num_clips']:,}",
             f"{classes_with_clips} of {len(labels)} classes present"),
        )
    )

    confusion_class = "figure confusion"
    if len(labels) <= MAX_CLASSES_WITH_COUNTS:
        confusion_class += " compact"
    sections = [f'<section class="stats">{headline}</section>']
    if details:
        sections.append(_section("Details", _details_table(details)))
    if history:
        sections.append(_section("Training curves", _curves_block(history)))
    sections.append(
        _section(
            "Confusion matrix",
            f'<p class="note">Rows are true classes, columns are predictions; each row is '
            f"normalised by its number of clips. "
            f'<a href="{CONFUSION_IMAGE}">Open the full-size image</a>.</p>'
            f'<a href="{CONFUSION_IMAGE}"><img class="{confusion_class}" src="{CONFUSION_IMAGE}" '
            f'alt="Confusion matrix over {len(labels)} classes"></a>',
        )
    )
    sections.append(_section("Most confused pairs", _confused_table(metrics["most_confused"])))
    sections.append(
        _section("Per-class accuracy (worst first)", _per_class_table(metrics["per_class"]))
    )

    return TEMPLATE.substitute(
        title=_escape(title),
        subtitle=_escape(f"{len(labels)} classes \u00b7 {metrics['num_clips']:,} clips"
                         f" \u00b7 generated {generated}"),
        body="\n".join(sections),
    )


def _section(heading: str, content: str) -> str:
    return f"<section>\n<h2>{_escape(heading)}</h2>\n{content}\n</section>"


def _stat(name: str, value: str, note: str) -> str:
    return (
        f'<div class="stat"><div class="stat-name">{_escape(name)}</div>'
        f'<div class="stat-value">{_escape(value)}</div>'
        f'<div class="stat-note">{_escape(note)}</div></div>'
    )


def _details_table(details: dict) -> str:
    rows = "".join(
        f"<tr><th>{_escape(key)}</th><td>{_escape(_format_detail(value))}</td></tr>"
        for key, value in details.items()
    )
    return f'<table class="details">{rows}</table>'


def _format_detail(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def _curves_block(history: list[dict]) -> str:
    best = best_epoch_index(history)
    scale = _accuracy_scale(_series(history, "train_acc") + _series(history, "val_acc"))

    def accuracy(value: Any) -> str:
        number = finite_number(value)
        return _percent(None if number is None else number / scale)

    columns = [
        ("epoch", "Epoch", _format_plain),
        ("train_loss", "Train loss", _format_loss),
        ("train_acc", "Train acc.", accuracy),
        ("val_loss", "Val. loss", _format_loss),
        ("val_acc", "Val. acc.", accuracy),
        ("lr", "Learning rate", _format_lr),
        ("seconds", "Time", _format_seconds),
    ]
    columns = [c for c in columns if any(entry.get(c[0]) is not None for entry in history)]
    head = "".join(f'<th class="num">{_escape(name)}</th>' for _, name, _ in columns)
    body = []
    for index, entry in enumerate(history):
        cells = "".join(
            f'<td class="num">{_escape(fmt(entry.get(key)))}</td>' for key, _, fmt in columns
        )
        marker = ' class="best"' if index == best else ""
        body.append(f"<tr{marker}>{cells}</tr>")
    best_note = ""
    if best is not None:
        epoch = history[best].get("epoch", best + 1)
        best_note = f" The best epoch ({_escape(_format_plain(epoch))}) is highlighted."
    return (
        f'<img class="figure" src="{CURVES_IMAGE}" alt="Loss and accuracy per epoch">'
        f"<details><summary>Per-epoch values</summary>"
        f'<p class="note">{len(history)} epochs.{best_note}</p>'
        f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
        f"</table></details>"
    )


def _confused_table(pairs: list[dict]) -> str:
    if not pairs:
        return '<p class="note">No clip was misclassified.</p>'
    rows = "".join(
        f"<tr><td>{_escape(pair['true'])}</td><td>{_escape(pair['predicted'])}</td>"
        f'<td class="num">{pair["count"]}</td>'
        f'<td class="num">{_percent(pair["fraction_of_true"])}</td></tr>'
        for pair in pairs
    )
    return (
        '<table class="data"><thead><tr><th>True class</th><th>Predicted as</th>'
        '<th class="num">Clips</th><th class="num">Share of true class</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _per_class_table(per_class: list[dict]) -> str:
    rows = []
    for row in per_class:
        accuracy = row["accuracy"]
        if accuracy is None:
            accuracy_cell = '<span class="muted">no clips</span>'
        else:
            accuracy_cell = (
                f'<span class="bar"><span class="fill {_accuracy_band(accuracy)}" '
                f'style="width:{accuracy * 100:.1f}%"></span></span>{_percent(accuracy)}'
            )
        if row["top_confusion"] is None:
            confusion_cell = '<span class="muted">\u2014</span>'
        else:
            confusion_cell = (
                f"{_escape(row['top_confusion'])} "
                f'<span class="muted">({row["top_confusion_count"]})</span>'
            )
        rows.append(
            f"<tr><td>{_escape(row['label'])}</td><td class=\"num\">{row['support']}</td>"
            f'<td class="acc">{accuracy_cell}</td><td>{confusion_cell}</td></tr>'
        )
    return (
        '<table class="data"><thead><tr><th>Class</th><th class="num">Clips</th>'
        "<th>Accuracy</th><th>Most often predicted instead (clips)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _accuracy_band(accuracy: float) -> str:
    if accuracy >= 0.8:
        return "good"
    if accuracy >= 0.5:
        return "fair"
    return "poor"


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _percent(fraction: float | None) -> str:
    return "\u2014" if fraction is None else f"{fraction * 100:.1f}%"


def _format_plain(value: Any) -> str:
    number = finite_number(value)
    if number is None:
        return "\u2014" if value is None else str(value)
    return _format_epoch(number)


def _format_loss(value: Any) -> str:
    number = finite_number(value)
    return "\u2014" if number is None else f"{number:.4f}"


def _format_lr(value: Any) -> str:
    number = finite_number(value)
    return "\u2014" if number is None else f"{number:.2e}"


def _format_seconds(value: Any) -> str:
    number = finite_number(value)
    if number is None:
        return "\u2014"
    return f"{number:.1f} s" if number < 120 else f"{number / 60:.1f} min"
