"""What to change when a run memorises its training clips instead of learning the actions.

Read from the history alone (no torch), after each epoch: validation accuracy has not improved for
a while, training accuracy has gone on climbing since, and the two are far apart.
"""

from __future__ import annotations

GAP = 0.25  # training accuracy this far above validation accuracy...
CLIMB = 0.05  # ...having climbed at least this much since validation's best epoch


def overfitting_advice(history: list[dict], num_train: int, end_to_end: bool, flip: bool) -> str | None:
    """A message saying what to change, or None while the run still generalises."""
    if len(history) < 5:
        return None
    patience = max(3, len(history) // 5)
    best = max(history, key=lambda row: row["val_acc"])
    last = history[-1]
    if last["epoch"] - best["epoch"] < patience:
        return None
    if last["train_acc"] - last["val_acc"] < GAP or last["train_acc"] - best["train_acc"] < CLIMB:
        return None
    changes = [f"more clips (it has {num_train} to learn from)"]
    if end_to_end:
        changes.append("a pretrained backbone kept frozen (--backbone-weights imagenet, or a weights file, with "
                       "--no-finetune): far fewer weights to fit")
    changes.append("more views per clip to draw from (--train-views 4)" +
                   ("" if flip else ", mirrored with --flip where left and right are not the label"))
    changes += ["more dropout (--dropout 0.7)", f"fewer epochs (it was best at epoch {best['epoch']})"]
    return (f"Overfitting: validation accuracy has not improved since epoch {best['epoch']} ({best['val_acc']:.1%}) "
            f"while training accuracy climbed to {last['train_acc']:.1%}: the model is memorising its training "
            f"clips. The weights kept are those of epoch {best['epoch']}. To generalise better, try: "
            + "; ".join(changes) + ".")
