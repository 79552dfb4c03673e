"""Helpers for tests and examples: a small untrained model exported like a real one, and in its
modules: `ucf101` (a folder shaped like the UCF101 release), `media` (videos made on the fly),
`processes` (commands and `actionrec serve` as real processes), `faults` (decoders that fail on
purpose, imported by name in worker processes), `extras` (the CLI as a base install runs it), `runs`
(a training run's result), and the hardening tools `fuzz`, `loadtest` and `attacks`.

Only `make_untrained_model` needs torch (the train extra), and imports it when called."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal


def make_untrained_model(
    out: str | os.PathLike,
    labels: Sequence[str] = ("grow", "shrink", "brighten", "darken"),
    num_frames: int = 4,
    image_size: int = 32,
    temporal: Literal["lstm", "mean"] = "lstm",
    seed: int = 0,
    width_mult: float = 0.35,
    hidden_size: int = 32,
    clip_duration_s: float | None = 2.0,
    fitted_batch_norm: bool = False,
) -> Path:
    """Export a randomly initialised, narrow model with a full card (needs the train extra).

    Its answers are meaningless but its file is a real `actionrec export` model. With
    `fitted_batch_norm`, batch-norm statistics are first taken from random frames, so that frame
    features differ from video to video (freshly initialised, they can all be zero).
    """
    import torch

    from actionrec.modelfile.card import ModelCard
    from actionrec.training.export import export_model
    from actionrec.training.model import ActionModel, ModelConfig

    torch.manual_seed(seed)
    config = ModelConfig(num_classes=len(labels), temporal=temporal, hidden_size=hidden_size, width_mult=width_mult)
    model = ActionModel(config)
    if fitted_batch_norm:
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a plain average over the batches below
        with torch.no_grad():
            for _ in range(4):
                model.train()(torch.randint(0, 256, (4, num_frames, image_size, image_size, 3), dtype=torch.uint8))
    model.eval()
    card = ModelCard(
        name="untrained-test-model",
        version="0",
        labels=list(labels),
        num_frames=num_frames,
        image_size=image_size,
        model={**config.to_dict(), "backbone": "mobilenet_v2", "backbone_weights": "none"},
        dataset="none (untrained)",
        clip_duration_s=clip_duration_s,
    )
    return export_model(model, card, Path(out))
