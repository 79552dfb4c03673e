"""Evaluation report: a confusion-matrix image, training curves, metrics.json and an HTML page.

The page references the images by relative file name, so a run directory can be moved or
served as a whole; it needs nothing else (no external CSS, scripts or fonts). The images are
drawn by `actionrec.training.plots`, which imports matplotlib only when it draws, so importing
this module is cheap.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import string
from pathlib import Path
from typing import Any

from actionrec.evaluation.scores import best_epoch_index, finite_number
from actionrec.files import write_json, write_text
from actionrec.training.plots import (
    MAX_CLASSES_WITH_COUNTS,
    accuracy_scale,
    format_epoch,
    percent,
    plot_confusion,
    plot_curves,
    series,
)

CONFUSION_IMAGE = "confusion.png"
CURVES_IMAGE = "curves.png"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"

TEMPLATE = string.Template((Path(__file__).parent / "report_template.html").read_text(encoding="utf-8"))


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

    `metrics` is what `actionrec.evaluation.scores.compute_metrics` returns. `history` holds one dict per
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


# --- HTML ---------------------------------------------------------------------------------


def _render_html(title: str, metrics: dict, history: list[dict], details: dict) -> str:
    labels = metrics["labels"]
    top_k = min(5, len(labels))
    classes_with_clips = sum(1 for row in metrics["per_class"] if row["support"])
    generated = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()

    headline = "".join(
        _stat(name, value, note)
        for name, value, note in (
            ("Top-1 accuracy", percent(metrics["top1"]), "predicted class is correct"),
            (f"Top-{top_k} accuracy", percent(metrics["top5"]),
             f"true class among the {top_k} highest scores"),
            ("Mean class accuracy", percent(metrics["mean_class_accuracy"]),
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
    scale = accuracy_scale(series(history, "train_acc") + series(history, "val_acc"))

    def accuracy(value: Any) -> str:
        number = finite_number(value)
        return percent(None if number is None else number / scale)

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
        f'<td class="num">{percent(pair["fraction_of_true"])}</td></tr>'
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
                f'style="width:{accuracy * 100:.1f}%"></span></span>{percent(accuracy)}'
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


def _format_plain(value: Any) -> str:
    number = finite_number(value)
    if number is None:
        return "\u2014" if value is None else str(value)
    return format_epoch(number)


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
