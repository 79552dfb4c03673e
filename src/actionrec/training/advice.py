"""What to change when a run memorises its training clips instead of learning the actions.

Read from the history alone (no torch): training accuracy far above the best validation accuracy,
and validation no longer improving (during the run) or the run over.
"""

from __future__ import annotations

from actionrec.evaluation.scores import best_epoch_index

GAP = 0.25  # training accuracy this far above the best validation accuracy...
MEMORISED = 0.8  # ...and this high: early on both can sit low while batch-norm statistics settle


def overfitting_advice(history: list[dict], num_train: int, end_to_end: bool, flip: bool,
                       final: bool = False, shift: float = 0.0) -> str | None:
    """A message saying what to change, or None while the run still generalises. During a run
    (`final` False) only once validation has stalled for a while."""
    index = best_epoch_index(history)
    if len(history) < 5 or index is None or "val_acc" not in history[index]:
        return None
    best = history[index]
    last = history[-1]
    if last["train_acc"] < MEMORISED or last["train_acc"] - best["val_acc"] < GAP:
        return None
    stalled = last["epoch"] - best["epoch"] >= max(3, len(history) // 5)
    if not (stalled or final):
        return None
    changes = [f"more clips (it has {num_train} to learn from)"]
    if end_to_end:
        changes.append("--shift 0.125 (each clip moved a little, differently every epoch)" if shift < 0.125 else
                       f"a larger --shift than {shift:g}")
        changes.append("a pretrained backbone kept frozen (--backbone-weights imagenet, or a weights file, with "
                       "--no-finetune): far fewer weights to fit")
    changes.append("more views per clip to draw from (--train-views 4)" +
                   ("" if flip else ", mirrored with --flip where left and right are not the label"))
    changes.append("more dropout (--dropout 0.7)")
    if stalled:
        changes.append(f"fewer epochs (it was best at epoch {best['epoch']})")
        finding = (f"validation accuracy has not improved since epoch {best['epoch']} ({best['val_acc']:.1%}) while "
                   f"training accuracy reached {last['train_acc']:.1%}")
    else:
        finding = (f"training accuracy reached {last['train_acc']:.1%}, validation accuracy only "
                   f"{best['val_acc']:.1%}")
    return (f"Overfitting: {finding}: the model is memorising its training clips more than it learns the "
            f"actions. The weights kept are those of epoch {best['epoch']}. To generalise better, try: "
            + "; ".join(changes) + ".")
