"""Metrics on hand-made predictions, and the files and page that write_report produces."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from actionrec.evaluation.scores import compute_metrics


def one_hot_scores(ranking_per_clip: list[list[int]], num_classes: int) -> np.ndarray:
    """Scores where each clip ranks classes in the given order (first = highest score)."""
    scores = np.zeros((len(ranking_per_clip), num_classes))
    for clip, ranking in enumerate(ranking_per_clip):
        for position, cls in enumerate(ranking):
            scores[clip, cls] = num_classes - position
    return scores


# Three classes a, b, c; d never appears as a true class.
LABELS = ["a", "b", "c", "d"]
TARGETS = np.array([0, 0, 0, 0, 1, 1, 2, 2])
PROBS = one_hot_scores(
    [
        [0, 1],  # a -> a
        [0, 1],  # a -> a
        [1, 0],  # a -> b
        [2, 3, 1, 0],  # a -> c, a is 4th
        [1, 0],  # b -> b
        [0, 1],  # b -> a
        [2, 0],  # c -> c
        [2, 0],  # c -> c
    ],
    num_classes=4,
)


@pytest.fixture(scope="module")
def metrics() -> dict:
    return compute_metrics(PROBS, TARGETS, LABELS)


def test_accuracies(metrics):
    assert metrics["num_clips"] == 8
    assert metrics["top1"] == pytest.approx(5 / 8)
    # With 4 classes "top-5" is top-4, so every clip counts.
    assert metrics["top5"] == pytest.approx(1.0)
    # Per-class: a 2/4, b 1/2, c 2/2; d has no clips and is left out of the mean.
    assert metrics["mean_class_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_top5_excludes_targets_ranked_sixth():
    num_classes = 7
    ranking = [[6, 5, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5, 6]]
    probs = one_hot_scores(ranking, num_classes)
    result = compute_metrics(probs, np.array([1, 4]), list("abcdefg"))
    assert result["top1"] == 0.0
    assert result["top5"] == pytest.approx(0.5)  # class 1 is 6th for clip 0, class 4 5th for clip 1


def test_confusion_rows_are_true_columns_are_predicted(metrics):
    assert metrics["confusion"] == [
        [2, 1, 1, 0],
        [1, 1, 0, 0],
        [0, 0, 2, 0],
        [0, 0, 0, 0],
    ]
    assert metrics["labels"] == LABELS


def test_per_class_worst_first_and_empty_class_last(metrics):
    per_class = metrics["per_class"]
    # a and b tie at 50%; a has more clips, so it comes first.
    assert [row["label"] for row in per_class] == ["a", "b", "c", "d"]
    a, b, c, d = per_class
    assert a == {
        "label": "a",
        "support": 4,
        "accuracy": 0.5,
        "top_confusion": "b",  # b and c both took one clip; the first class wins the tie
        "top_confusion_count": 1,
    }
    assert b["top_confusion"] == "a" and b["top_confusion_count"] == 1
    assert c["accuracy"] == 1.0 and c["top_confusion"] is None and c["top_confusion_count"] == 0
    assert d["support"] == 0 and d["accuracy"] is None and d["top_confusion"] is None


def test_most_confused_pairs(metrics):
    assert metrics["most_confused"] == [
        # Equal counts: the larger share of its true class first.
        {"true": "b", "predicted": "a", "count": 1, "fraction_of_true": 0.5},
        {"true": "a", "predicted": "b", "count": 1, "fraction_of_true": 0.25},
        {"true": "a", "predicted": "c", "count": 1, "fraction_of_true": 0.25},
    ]


def test_most_confused_keeps_ten_largest():
    num_classes = 12
    labels = [f"class{i}" for i in range(num_classes)]
    # Clips of class 0 predicted as every other class, k times for class k.
    targets, predictions = [], []
    for wrong in range(1, num_classes):
        targets += [0] * wrong
        predictions += [wrong] * wrong
    probs = np.eye(num_classes)[predictions]
    result = compute_metrics(probs, np.array(targets), labels)
    pairs = result["most_confused"]
    assert len(pairs) == 10
    assert [pair["count"] for pair in pairs] == list(range(11, 1, -1))
    assert pairs[0]["predicted"] == "class11"


def test_result_is_json_serialisable(metrics):
    assert json.loads(json.dumps(metrics)) == metrics


def test_zero_clips_is_an_error():
    with pytest.raises(ValueError, match="zero clips"):
        compute_metrics(np.zeros((0, 3)), np.zeros((0,), dtype=int), ["a", "b", "c"])


@pytest.mark.parametrize(
    ("probs", "targets", "message"),
    [
        (np.zeros((2, 3)), np.array([0, 1, 2]), "targets has 3"),
        (np.zeros((2, 2)), np.array([0, 1]), "2 columns but there are 3 labels"),
        (np.zeros((2, 3)), np.array([0, 3]), r"class indices in \[0, 2\]"),
        (np.zeros(3), np.array([0]), "shape"),
    ],
)
def test_inconsistent_inputs_are_errors(probs, targets, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(probs, targets, ["a", "b", "c"])


# --- report -------------------------------------------------------------------------------

HISTORY = [
    {"epoch": 1, "train_loss": 1.9, "train_acc": 0.35, "val_loss": 1.7, "val_acc": 0.40,
     "lr": 1e-3, "seconds": 12.5},
    {"epoch": 2, "train_loss": 1.2, "train_acc": 0.62, "val_loss": 1.1, "val_acc": 0.71,
     "lr": 1e-3, "seconds": 12.1},
    {"epoch": 3, "train_loss": 0.8, "train_acc": 0.80, "val_loss": None, "val_acc": 0.66},
]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def hostile_metrics() -> dict:
    labels = ["walk", "<script>alert(1)</script>", "run & jump", 'say "hi"', "never seen"]
    targets = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    probs = np.eye(5)[[0, 1, 1, 1, 0, 2, 3, 1]] + 0.01
    return compute_metrics(probs, targets, labels)


def test_write_report_creates_files_and_page(tmp_path, hostile_metrics):
    pytest.importorskip("matplotlib")
    from actionrec.training.report import write_report

    details = {"model": "MobileNetV2 + LSTM", "dataset": "<synthetic>", "frames": 8}
    report = write_report(tmp_path / "run", hostile_metrics, HISTORY, title="Test <run>",
                          details=details)

    run_dir = tmp_path / "run"
    assert report == run_dir / "report.html"
    for name in ("report.html", "confusion.png", "curves.png", "metrics.json"):
        assert (run_dir / name).is_file(), name

    page = report.read_text(encoding="utf-8")
    # Headline numbers.
    assert f"{hostile_metrics['top1'] * 100:.1f}%" in page
    assert f"{hostile_metrics['top5'] * 100:.1f}%" in page
    assert f"{hostile_metrics['mean_class_accuracy'] * 100:.1f}%" in page
    assert ">8<" in page  # number of clips
    # User text is escaped everywhere.
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "run &amp; jump" in page
    assert "say &quot;hi&quot;" in page
    assert "Test &lt;run&gt;" in page
    assert "&lt;synthetic&gt;" in page
    # Images by relative name, nothing fetched from elsewhere.
    assert 'src="confusion.png"' in page and 'src="curves.png"' in page
    assert "http://" not in page and "https://" not in page

    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert saved["top1"] == hostile_metrics["top1"]
    assert saved["confusion"] == hostile_metrics["confusion"]
    assert saved["details"] == details

    width, height = png_size(run_dir / "confusion.png")
    assert 400 <= width <= 4000 and 400 <= height <= 4000
    width, height = png_size(run_dir / "curves.png")
    assert width > height >= 300


def test_write_report_without_history(tmp_path, hostile_metrics):
    pytest.importorskip("matplotlib")
    from actionrec.training.report import write_report

    report = write_report(tmp_path, hostile_metrics)
    assert report.is_file()
    assert (tmp_path / "confusion.png").is_file()
    assert not (tmp_path / "curves.png").exists()
    assert "curves.png" not in report.read_text(encoding="utf-8")


def test_confusion_image_grows_with_the_number_of_classes(tmp_path):
    pytest.importorskip("matplotlib")
    from actionrec.training.report import plot_confusion

    rng = np.random.default_rng(0)
    sizes = {}
    for num_classes in (4, 50):
        labels = [f"LongClassName{i:03d}" for i in range(num_classes)]
        targets = rng.integers(0, num_classes, 200)
        result = compute_metrics(rng.random((200, num_classes)), targets, labels)
        path = tmp_path / f"confusion{num_classes}.png"
        plot_confusion(result["confusion"], labels, path)
        sizes[num_classes] = png_size(path)
    assert sizes[50][0] > sizes[4][0] and sizes[50][1] > sizes[4][1]
    assert max(sizes[50]) < 4000


def test_best_epoch_is_highest_validation_accuracy():
    from actionrec.evaluation.scores import best_epoch_index

    assert best_epoch_index(HISTORY) == 1
    assert best_epoch_index([{"val_loss": 2.0}, {"val_loss": 1.0}, {"val_loss": 1.5}]) == 1
    assert best_epoch_index([{"train_loss": 1.0}]) is None


def test_importing_report_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, actionrec.training.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
