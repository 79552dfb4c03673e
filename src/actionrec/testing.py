"""Helpers for tests and examples: a small untrained model exported like a real one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def make_untrained_model(
    out: str | os.PathLike,
    labels: Sequence[str] = ("grow", "shrink", "brighten", "darken"),
    num_frames: int = 4,
    image_size: int = 32,
    temporal: str = "lstm",
    seed: int = 0,
) -> Path:
    """Export a randomly initialised, narrow model with full metadata (needs the train extra).

    Its answers are meaningless but its file is a real `actionrec export` model.
    """
    import torch

    from actionrec.export import export_model
    from actionrec.model import ActionModel, ModelConfig
    from actionrec.video import IMAGENET_MEAN, IMAGENET_STD, SAMPLING_RULE

    torch.manual_seed(seed)
    config = ModelConfig(num_classes=len(labels), temporal=temporal, hidden_size=32, width_mult=0.35)
    model = ActionModel(config).eval()
    metadata = {
        "format": 1,
        "name": "untrained-test-model",
        "version": "0",
        "labels": list(labels),
        "num_frames": num_frames,
        "image_size": image_size,
        "input": {"name": "frames", "dtype": "uint8", "shape": ["batch", num_frames, image_size, image_size, 3],
                  "channels": "RGB"},
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 255, "in_graph": True},
        "sampling": SAMPLING_RULE,
        "model": {**config.to_dict(), "backbone": "mobilenet_v2", "backbone_weights": "none"},
        "dataset": "none (untrained)",
    }
    return export_model(model, metadata, Path(out))
