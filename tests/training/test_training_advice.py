"""What training says to change when its run memorises its clips (`actionrec.training.advice`)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="training needs the train extra (torch)")


def _history(train: list[float], val: list[float]) -> list[dict]:
    return [{"epoch": epoch, "train_acc": t, "val_acc": v} for epoch, (t, v) in enumerate(zip(train, val), 1)]


def test_training_says_what_to_change_when_it_memorises_its_clips():
    from actionrec.training.advice import overfitting_advice

    # The run: 97.7% on training clips, validation stalled near 42%.
    memorising = _history([0.2, 0.4, 0.55, 0.7, 0.8, 0.88, 0.93, 0.96, 0.977],
                          [0.2, 0.3, 0.38, 0.42, 0.41, 0.40, 0.42, 0.41, 0.40])
    advice = overfitting_advice(memorising, num_train=256, end_to_end=True, flip=False)
    assert advice and "since epoch 4" in advice and "97.7%" in advice
    assert "--backbone-weights imagenet" in advice and "--train-views 4" in advice and "--flip" in advice
    assert "256" in advice

    learning = _history([0.2, 0.4, 0.6, 0.7, 0.8, 0.9], [0.2, 0.35, 0.5, 0.6, 0.7, 0.8])
    assert overfitting_advice(learning, 256, True, False) is None
    plateau_together = _history([0.5] * 8, [0.45, 0.5, 0.48, 0.47, 0.49, 0.48, 0.47, 0.46])
    assert overfitting_advice(plateau_together, 256, True, False) is None  # not memorising: underfitting
    assert overfitting_advice(memorising[:4], 256, True, False) is None  # too early to tell
    # The run in README: training accuracy near 99%, validation still creeping up to about 50%.
    saturated = _history([0.2, 0.5, 0.7, 0.85, 0.94, 0.97, 0.988], [0.12, 0.13, 0.2, 0.3, 0.4, 0.45, 0.5])
    assert overfitting_advice(saturated, 256, True, False) is None  # still improving: not yet, during the run
    assert "only 50.0%" in overfitting_advice(saturated, 256, True, False, final=True)  # but said at the end
    settling = _history([0.2, 0.3, 0.4, 0.45, 0.5, 0.55], [0.125] * 6)  # batch-norm statistics settling
    assert overfitting_advice(settling, 256, True, False, final=True) is None
    assert "a larger --shift than 0.125" in overfitting_advice(memorising, 256, True, False, shift=0.125)


def test_each_epoch_line_says_how_long_is_left_at_the_recent_pace():
    from actionrec.training.train import _time_left

    history = [{"epoch": 1, "seconds": 60.0}] + [{"epoch": e, "seconds": 6.0} for e in range(2, 7)]
    assert _time_left(history, 5) == "; about 30 s left"  # the last five epochs, not the slow first one
    assert _time_left(history, 20) == "; about 2 min 0 s left"
    assert _time_left(history, 0) == ""
