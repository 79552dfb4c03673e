"""Training settings: a TOML file, a run resumed from its own config.json, unknown settings refused,
and a folder dataset's schedule (epochs, batch size) following its size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actionrec.testing.processes import run_cli

pytest.importorskip("torch", reason="training needs the train extra (torch)")

TINY = {"frames": 4, "image_size": 32, "width_mult": 0.35, "hidden_size": 16, "batch_size": 8,
        "backbone_weights": "none"}


@pytest.mark.slow
def test_train_from_a_toml_file_and_resume_a_run_from_its_own_config(videos: Path, tmp_path: Path):
    settings = tmp_path / "tiny.toml"
    lines = [f"{key} = {json.dumps(value)}" for key, value in TINY.items()]
    settings.write_text("\n".join(["[train]", f'data_dir = "{videos / "clips"}"', "epochs = 1",
                                   f'cache_dir = "{tmp_path / "cache"}"', *lines]) + "\n")
    run = tmp_path / "run"
    first = run_cli("train", "--config", settings, "--out", run)
    assert first.returncode == 0, first.stderr
    saved = json.loads((run / "config.json").read_text())["train"]
    assert saved["frames"] == 4 and saved["hidden_size"] == 16 and saved["epochs"] == 1

    resumed = run_cli("train", "--out", run, "--resume", "--epochs", "2")  # no other flag retyped
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming after epoch 1" in resumed.stdout
    assert [row["epoch"] for row in json.loads((run / "history.json").read_text())] == [1, 2]

    again = run_cli("train", "--config", run / "config.json", "--out", tmp_path / "again", "--epochs", "1")
    assert again.returncode == 0, again.stderr  # a run's config.json is a settings file too
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    refused = run_cli("train", "--config", bad, "--out", tmp_path / "x")
    assert refused.returncode == 1 and "unknown setting(s) epochz" in " ".join(refused.stderr.split())


def test_a_folder_datasets_schedule_follows_its_size():
    from actionrec.training.config import MIN_HEAD_STEPS, TrainConfig

    def schedule(clips: int, **settings) -> tuple[int, int]:
        config = TrainConfig(data_dir="d", out="o", **settings)
        config.resolve_schedule(clips)
        return config.epochs, config.batch_size

    assert schedule(70) == (67, 8)  # 9 steps an epoch: 603 steps, not the 45 of 15 epochs of 32
    assert schedule(144) == (67, 16)
    assert schedule(2000) == (15, 32)  # large enough: 15 epochs are over 600 steps
    for clips in (10, 70, 144, 500, 2000):
        epochs, batch = schedule(clips)
        assert epochs * -(-clips // batch) >= MIN_HEAD_STEPS or epochs == 200
    assert schedule(70, backbone_weights="none") == (15, 8)  # end to end: each step costs the backbone
    assert schedule(70, epochs=5, batch_size=4) == (5, 4)  # what is given stays
    assert schedule(5000, dataset="ucf101") == (20, 64)  # the UCF101 recipe's own
