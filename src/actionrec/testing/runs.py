"""What a finished training run amounts to, to compare two runs: its history and its weights' bytes."""

from __future__ import annotations

import json
from pathlib import Path


def run_result(run: Path) -> tuple[list[tuple], bytes]:
    """(epoch, train loss, validation loss, validation accuracy) of each epoch, and model.safetensors."""
    history = json.loads((run / "history.json").read_text())
    return [(row["epoch"], row["train_loss"], row["val_loss"], row["val_acc"]) for row in history], \
        (run / "model.safetensors").read_bytes()
