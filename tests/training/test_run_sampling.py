"""A run records the version of the frame sampling its clips were cached with, and a run made with
another version is neither resumed nor exported: its weights learnt from frames unlike today's. A run
made before the version was recorded counts as version 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="runs are made with the train extra (torch)")

from actionrec.errors import TrainingError  # noqa: E402
from actionrec.training.config import TrainConfig  # noqa: E402
from actionrec.video import spec  # noqa: E402

TINY = dict(frames=4, image_size=32, width_mult=0.35, hidden_size=8, backbone_weights="none", epochs=1, batch_size=4)


def make_run(path: Path) -> Path:
    """A run folder as `actionrec train` leaves it (config.json, labels, weights), without training."""
    from actionrec.training.model import ActionModel, ModelConfig
    from actionrec.training.runs import RunDir

    config = TrainConfig(data_dir=str(path.parent / "data"), out=str(path), **TINY)
    model = ActionModel(ModelConfig(num_classes=2, temporal=config.temporal, hidden_size=config.hidden_size,
                                    width_mult=config.width_mult)).eval()
    run = RunDir(path)
    run.write_config(config, model.config, ["a", "b"], dataset="test", backbone_id="none", num_train=4, num_val=2,
                     skipped={}, clip_duration_s=None)
    run.save_weights(model)
    return path


def made_before_the_version_was_recorded(run: Path) -> None:
    saved = json.loads((run / "config.json").read_text())
    del saved["sampling_version"]
    (run / "config.json").write_text(json.dumps(saved))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def test_a_run_records_the_sampling_version_it_was_made_with(run: Path):
    assert json.loads((run / "config.json").read_text())["sampling_version"] == spec.SAMPLING_VERSION == 1


def test_a_run_of_another_sampling_version_is_not_resumed(run: Path, monkeypatch):
    from actionrec.training.train import train

    monkeypatch.setattr(spec, "SAMPLING_VERSION", 2)  # a newer actionrec
    config = TrainConfig(data_dir=str(run.parent / "no-data"), out=str(run), device="cpu", **TINY)
    with pytest.raises(TrainingError) as refused:
        train(config, resume=True)  # refused before the (missing) data is looked at
    message = str(refused.value)
    assert str(run) in message and "version 1 of the frame sampling" in message and "version 2" in message
    assert "cannot be resumed" in message and "start a new run with another --out" in message


def test_a_run_of_a_newer_sampling_version_advises_upgrading(run: Path, monkeypatch):
    from actionrec.training.runs import RunDir

    monkeypatch.setattr(spec, "SAMPLING_VERSION", 2)
    make_run(run)  # made by the newer actionrec
    monkeypatch.setattr(spec, "SAMPLING_VERSION", 1)
    with pytest.raises(TrainingError, match=r"version 2 of the frame sampling.*pip install -U actionrec"):
        RunDir(run).check_sampling("resume")


def test_the_state_of_another_sampling_version_does_not_match(monkeypatch):
    from actionrec.training.state import fingerprint

    config = TrainConfig(data_dir="d", out="o", **TINY)
    before = fingerprint(config, ["a", "b"])
    monkeypatch.setattr(spec, "SAMPLING_VERSION", 2)
    assert fingerprint(config, ["a", "b"]) != before


def test_a_run_of_another_sampling_version_is_not_exported(run: Path, monkeypatch):
    from actionrec.training.runs import RunDir

    monkeypatch.setattr(spec, "SAMPLING_VERSION", 2)
    with pytest.raises(TrainingError) as refused:
        RunDir(run).export()
    message = str(refused.value)
    assert str(run) in message and "version 1" in message and "cannot be exported" in message
    assert "train a new run" in message and not (run / "model.onnx").exists()


def test_a_run_made_before_the_version_was_recorded_counts_as_version_1(run: Path, monkeypatch):
    from actionrec.modelfile.card import read_card
    from actionrec.training.runs import RunDir

    made_before_the_version_was_recorded(run)
    assert read_card(RunDir(run).export()).sampling_version == 1
    monkeypatch.setattr(spec, "SAMPLING_VERSION", 2)
    with pytest.raises(TrainingError, match="version 1 of the frame sampling"):
        RunDir(run).export()
    with pytest.raises(TrainingError, match="cannot be resumed"):
        RunDir(run).check_sampling("resume")


def test_export_in_the_cli_says_which_run_and_what_to_do(run: Path, monkeypatch):
    from typer.testing import CliRunner

    from actionrec.cli import app

    monkeypatch.setattr(spec, "SAMPLING_VERSION", 2)
    result = CliRunner().invoke(app, ["export", str(run)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "cannot be exported" in " ".join(result.output.split())
