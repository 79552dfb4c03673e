"""The model and what training reads from it: the head reads the built network's feature width, and a
feature extractor that cannot run in ONNX Runtime falls back to PyTorch, saying so once."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_wider_backbones_train_and_export(tmp_path: Path):
    """MobileNetV2 widens its last layer above width 1.0: the head must read the built width."""
    from typer.testing import CliRunner

    from actionrec.cli import app
    from actionrec.datasets.synth import generate_dataset
    from actionrec.runtime.recognizer import Recognizer
    from actionrec.training.model import ActionModel, ModelConfig

    assert ActionModel(ModelConfig(num_classes=2, width_mult=1.4)).num_features == 1792
    generate_dataset(tmp_path / "data", clips_per_class=3, seed=2, width=48, height=32)
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epochs", "1",
                                 "--frames", "2", "--image-size", "32", "--width-mult", "1.4", "--hidden-size", "8",
                                 "--batch-size", "8", "--backbone-weights", "none",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["export", str(tmp_path / "run")]).exit_code == 0
    recognizer = Recognizer(tmp_path / "run" / "model.onnx")
    assert recognizer.card.model["width_mult"] == 1.4
    frames = np.zeros((1, 2, 32, 32, 3), np.uint8)
    assert recognizer.classify(frames).shape == (1, 8)


def test_a_failing_feature_extractor_says_so_once(tmp_path: Path, monkeypatch):
    pytest.importorskip("torch")
    from rich.console import Console

    from actionrec.training import features
    from actionrec.training.config import TrainConfig
    from actionrec.training.model import ActionModel, ModelConfig

    def broken_exporter(*args, **kwargs):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(features, "to_onnx", broken_exporter)
    config = TrainConfig(data_dir="unused", out="unused", frames=2, image_size=32, backbone_weights="x.pth",
                         width_mult=0.35, cache_dir=str(tmp_path))
    model = ActionModel(ModelConfig(num_classes=2, width_mult=0.35))
    console = Console(record=True, width=200)
    extractor = features.extractor_for(config, model, "file-test", console)
    for _ in range(3):  # training, validation and evaluation clips all ask for it
        extract = extractor.extract
    frames = np.zeros((1, 2, 32, 32, 3), np.uint8)
    assert extract(frames).shape == (1, 2, model.num_features)  # PyTorch does the work instead
    output = console.export_text()
    assert output.count("ONNX Runtime cannot extract the frame features") == 1
    assert "no exporter here" in output and "slower" in output


def test_one_head_module_for_each_trainable_head():
    """The heads training builds, `train --temporal`'s choices and the card's table of heads agree: the
    table's trainable heads; `taught_motion` (made by `teach` alone) is not offered."""
    pytest.importorskip("torch")
    from actionrec.modelfile.card import TEMPORAL_HEADS, TRAINABLE_HEADS
    from actionrec.training.config import TrainConfig
    from actionrec.training.model import HEADS, ModelConfig

    assert HEADS.keys() == set(TRAINABLE_HEADS) == {name for name, head in TEMPORAL_HEADS.items() if head.trainable}
    assert {"taught_linear", "taught_motion"} <= set(TEMPORAL_HEADS) and "taught_motion" not in TRAINABLE_HEADS
    option = next(field for field in fields(TrainConfig) if field.name == "temporal").metadata
    assert tuple(option["choices"]) == TRAINABLE_HEADS  # what `train --temporal` accepts and --help lists
    assert all(TEMPORAL_HEADS[name].description in option["help"] for name in TRAINABLE_HEADS)
    for wrong in ("gru", "taught_motion"):
        with pytest.raises(ValueError, match="'lstm' or 'mean' or 'motion'"):
            TrainConfig(data_dir="data", out="run", temporal=wrong)
        with pytest.raises(ValueError, match="one of lstm, mean, motion"):
            ModelConfig(num_classes=2, temporal=wrong)
