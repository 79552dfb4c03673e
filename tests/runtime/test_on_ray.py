"""Ray for collections: predictions as a Ray Data pipeline give the local path's answers, a bad
video is a row with its error, and training's cache built on Ray equals the one built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from actionrec.datasets.synth import generate_dataset

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra")
pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_and_videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from actionrec.testing import make_untrained_model

    root = tmp_path_factory.mktemp("ray")
    model = make_untrained_model(root / "model.onnx", fitted_batch_norm=True)
    generate_dataset(root / "data", clips_per_class=3, seed=9, width=64, height=48)
    whole = next((root / "data" / "grow").glob("*.mp4")).read_bytes()
    (root / "data" / "grow" / "broken.mp4").write_bytes(whole[:2500])
    return model, root / "data"


def test_ray_answers_equal_the_local_ones(model_and_videos):
    from actionrec.runtime.on_ray import ray_predict
    from actionrec.runtime.recognizer import Recognizer

    model, data = model_and_videos
    videos = sorted(data.rglob("*.mp4"))
    local = {result.path.resolve(): result for result in Recognizer(model).predict_many(videos, workers=0, top_k=4)}
    remote = {result.path.resolve(): result for result in ray_predict(model, [str(v.resolve()) for v in videos],
                                                                      top_k=4)}
    assert set(remote) == set(local) and len(remote) == len(videos)
    for path, expected in local.items():
        got = remote[path]
        if expected.prediction is None:
            assert got.prediction is None and got.reason == expected.reason == "not_a_video"
            assert str(path) in got.error
            continue
        assert got.prediction.action == expected.prediction.action
        assert [t.action for t in got.prediction.top_k] == [t.action for t in expected.prediction.top_k]
        np.testing.assert_allclose([t.confidence for t in got.prediction.top_k],
                                   [t.confidence for t in expected.prediction.top_k], atol=2e-4)
        assert got.prediction.video == expected.prediction.video
        assert got.prediction.warnings == expected.prediction.warnings
        assert got.prediction.segments == expected.prediction.segments  # None: no timeline was asked for
        check, local_check = got.prediction.unknown_check, expected.prediction.unknown_check
        assert (check.score, check.threshold, check.unknown) == (local_check.score, local_check.threshold,
                                                                 local_check.unknown)
        assert check.value == pytest.approx(local_check.value, abs=2e-4)
        assert got.prediction.uncertain == expected.prediction.uncertain
    assert len({r.prediction.action for r in local.values() if r.prediction}) > 1  # answers that can differ


def test_the_command_writes_the_same_rows_with_ray(model_and_videos, tmp_path: Path):
    from typer.testing import CliRunner

    from actionrec.cli import app

    model, data = model_and_videos
    runner = CliRunner()
    here = runner.invoke(app, ["predict", str(model), str(data), "--workers", "0",
                               "--output", str(tmp_path / "a.jsonl")])
    there = runner.invoke(app, ["predict", str(model), str(data), "--ray", "--output", str(tmp_path / "b.jsonl")])
    assert here.exit_code == there.exit_code == 1  # the broken video
    rows = [{json.loads(line)["path"]: json.loads(line) for line in (tmp_path / name).read_text().splitlines()}
            for name in ("a.jsonl", "b.jsonl")]
    assert set(rows[0]) == set(rows[1])
    for path, row in rows[0].items():
        assert (row["action"], row["reason"]) == (rows[1][path]["action"], rows[1][path]["reason"])
    again = runner.invoke(app, ["predict", str(model), str(data), "--ray", "--output", str(tmp_path / "b.jsonl")])
    assert "skipped (answered, or failed for good" in again.output

    import pyarrow.parquet as parquet

    table = runner.invoke(app, ["predict", str(model), str(data), "--ray", "--output", str(tmp_path / "c.parquet")])
    assert table.exit_code == 1
    written = {row["path"]: row for row in parquet.read_table(tmp_path / "c.parquet").to_pylist()}
    assert {path: row["action"] for path, row in written.items()} == {p: r["action"] for p, r in rows[0].items()}
    resumed = runner.invoke(app, ["predict", str(model), str(data), "--ray", "--output", str(tmp_path / "c.parquet")])
    assert "skipped (answered, or failed for good" in resumed.output
    assert len(parquet.read_table(tmp_path / "c.parquet")) == len(written)  # one row a video: the broken one kept


def test_uris_are_listed_named_as_given_and_a_finished_run_skips_them_all(model_and_videos, tmp_path: Path):
    import shutil

    from typer.testing import CliRunner

    from actionrec.cli import app

    model, data = model_and_videos
    good = tmp_path / "bucket" / "videos"
    good.mkdir(parents=True)
    for video in sorted((data / "grow").glob("grow_*.mp4")):
        shutil.copy(video, good / video.name)
    (good / "notes.txt").write_text("not a video")
    uri = f"file://{good}"
    output = tmp_path / "new" / "folder" / "results.parquet"  # a folder that does not exist yet
    runner = CliRunner()
    first = runner.invoke(app, ["predict", str(model), uri, "--ray", "--output", str(output)])
    assert first.exit_code == 0, first.output
    import pyarrow.parquet as parquet

    paths = sorted(row["path"] for row in parquet.read_table(output).to_pylist())
    assert paths == [f"{uri}/{video.name}" for video in sorted(good.glob("*.mp4"))]
    again = runner.invoke(app, ["predict", str(model), uri, "--ray", "--output", str(output)])
    assert again.exit_code == 0, again.output
    assert f"0 answered, 0 failed, {len(paths)} skipped" in " ".join(again.output.split())
    assert len(parquet.read_table(output)) == len(paths)


@pytest.mark.parametrize("frozen", [False, True], ids=["frames", "features"])
def test_the_training_cache_built_on_ray_equals_the_local_one(model_and_videos, tmp_path: Path, frozen: bool):
    import torch
    from rich.console import Console
    from torchvision.models import mobilenet_v2

    from actionrec.datasets import load_dataset
    from actionrec.training.config import TrainConfig
    from actionrec.training.features import build_cache, extractor_for
    from actionrec.training.model import ActionModel, ModelConfig, load_backbone_weights

    _, data = model_and_videos
    weights = "none"
    if frozen:
        weights = str(tmp_path / "backbone.pth")
        torch.save(mobilenet_v2(weights=None, width_mult=0.35).state_dict(), weights)
    samples = load_dataset(data).train
    caches = []
    for where in ("local", "ray"):
        config = TrainConfig(data_dir=str(data), out=str(tmp_path / where), cache_dir=str(tmp_path / f"cache-{where}"),
                             frames=4, image_size=32, width_mult=0.35, backbone_weights=weights, train_views=2,
                             ray=where == "ray")
        model = ActionModel(ModelConfig(num_classes=8, width_mult=0.35, hidden_size=16))
        backbone_id = load_backbone_weights(model, weights)
        extractor = extractor_for(config, model, backbone_id, Console(quiet=True))
        cache, usable, failed = build_cache(config, samples, 2, backbone_id, Console(quiet=True), "Caching",
                                            extractor)
        assert len(failed) == 1 and "broken.mp4" in str(next(iter(failed)))
        caches.append((cache, usable))
    (local, usable), (remote, remote_usable) = caches
    assert [s.path for s in usable] == [s.path for s in remote_usable]
    for sample in usable:
        np.testing.assert_allclose(local.get(sample.path).astype(np.float32),
                                   remote.get(sample.path).astype(np.float32), atol=1e-2 if frozen else 0)
