"""The whole pipeline on a tiny synthetic dataset: train, evaluate, export, predict, from the CLI."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from actionrec.cli import app
from actionrec.datasets.synth import generate_dataset
from actionrec.errors import ModelFileError

pytestmark = pytest.mark.slow
runner = CliRunner()

TINY = ["--frames", "4", "--image-size", "32", "--width-mult", "0.35", "--hidden-size", "32",
        "--batch-size", "8", "--backbone-weights", "none"]


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    generate_dataset(root / "data", clips_per_class=6, seed=1, width=64, height=48)
    return root


@pytest.fixture(scope="module")
def trained(workdir: Path) -> Path:
    run = workdir / "run"
    result = invoke("train", workdir / "data", "--out", run, "--epochs", "2", "--cache-dir", workdir / "cache", *TINY)
    assert result.exit_code == 0, result.output
    return run


def test_training_writes_a_complete_run(trained: Path):
    for name in ("config.json", "model.safetensors", "history.json", "history.csv", "labels.txt", "train_state.pt"):
        assert (trained / name).is_file(), name
    config = json.loads((trained / "config.json").read_text())
    assert len(config["labels"]) == 8 and config["spec"] == {"num_frames": 4, "image_size": 32}
    history = json.loads((trained / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(history[0])


def test_resume_continues_after_the_last_epoch(workdir: Path, trained: Path):
    run = workdir / "resumed"
    base = ["train", workdir / "data", "--out", run, "--cache-dir", workdir / "cache", *TINY]
    assert invoke(*base, "--epochs", "1").exit_code == 0
    result = invoke(*base, "--epochs", "2", "--resume")
    assert result.exit_code == 0, result.output
    assert "Resuming after epoch 1" in result.output
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    other = invoke(*base, "--epochs", "3", "--resume", "--hidden-size", "16")
    assert other.exit_code == 1 and "other settings" in " ".join(other.output.split())
    assert "--hidden-size 32 there, 16 here" in " ".join(other.output.split())  # says which
    assert json.loads((run / "config.json").read_text())["model"]["hidden_size"] == 32  # left as it was


def test_a_resumed_run_keeps_the_schedule_it_started_with(workdir: Path):
    """Epochs and batch size drawn from the data are the run's own: resuming from Python with
    them unset continues the run's schedule, not one drawn again."""
    from actionrec.training.config import TrainConfig
    from actionrec.training.train import train

    run = workdir / "scheduled"
    tiny = [part for part in TINY if part not in ("--batch-size", "8")]
    assert invoke("train", workdir / "data", "--out", run, "--cache-dir", workdir / "cache", "--epochs", "1",
                  *tiny).exit_code == 0
    saved = json.loads((run / "config.json").read_text())["train"]
    assert saved["batch_size"] == 8 and saved["epochs"] == 1  # 38 training clips: batches of 8
    config = TrainConfig(data_dir=str(workdir / "data"), out=str(run), cache_dir=str(workdir / "cache"), frames=4,
                         image_size=32, width_mult=0.35, hidden_size=32, backbone_weights="none")
    assert config.epochs is None and config.batch_size is None
    result = train(config, resume=True)
    assert [row["epoch"] for row in result.history] == [1]  # not 15 more epochs of a schedule drawn anew


def test_a_run_is_the_same_wherever_the_dataset_lies(workdir: Path, tmp_path: Path):
    import shutil

    shutil.copytree(workdir / "data", tmp_path / "moved" / "data")
    histories = []
    for data in (workdir / "data", tmp_path / "moved" / "data"):
        run = tmp_path / f"run-{len(histories)}"
        result = invoke("train", data, "--out", run, "--epochs", "1",
                        "--cache-dir", tmp_path / f"cache-{len(histories)}", "--train-views", "2", *TINY)
        assert result.exit_code == 0, result.output
        histories.append([{k: v for k, v in row.items() if k != "seconds"}
                          for row in json.loads((run / "history.json").read_text())])
    assert histories[0] == histories[1]


def test_evaluate_writes_metrics_and_report(trained: Path):
    result = invoke("evaluate", trained)
    assert result.exit_code == 0, result.output
    metrics = json.loads((trained / "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 1
    assert len(metrics["confusion"]) == 8
    assert (trained / "report.html").is_file() and (trained / "confusion.png").is_file()
    assert "top-1" in result.output


def test_export_and_predict(trained: Path, workdir: Path):
    result = invoke("export", trained)
    assert result.exit_code == 0, result.output
    model = trained / "model.onnx"
    video = next((workdir / "data" / "grow").glob("*.mp4"))
    result = invoke("predict", model, video, "--json", "--top-k", "3")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output.strip().splitlines()[-1])
    labels = (trained / "labels.txt").read_text().split()
    assert answer["action"] in labels and 0 <= answer["confidence"] <= 1
    assert [entry["action"] for entry in answer["top_k"]][0] == answer["action"] and len(answer["top_k"]) == 3
    assert answer["video"]["num_frames"] > 0 and answer["timings_ms"]["total"] > 0


def test_predict_reports_unreadable_videos_and_goes_on(trained: Path, workdir: Path, tmp_path: Path):
    if not (trained / "model.onnx").exists():
        assert invoke("export", trained).exit_code == 0
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    good = next((workdir / "data" / "shrink").glob("*.mp4"))
    result = invoke("predict", trained / "model.onnx", bad, good, "--json")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.output.strip().splitlines() if line.startswith("{")]
    assert lines[0]["file"] == str(bad) and "error" in lines[0] and lines[0]["reason"] == "not_a_video"
    assert lines[1]["file"] == str(good) and "action" in lines[1]


def test_training_and_serving_see_the_same_frames_and_model_outputs(trained: Path, workdir: Path):
    """The frames the trainer caches are the frames the server decodes; ONNX matches PyTorch on them."""
    import torch

    from actionrec.runtime.recognizer import Recognizer
    from actionrec.training.runs import RunDir
    from actionrec.training.views import ViewDecoder
    from actionrec.video import stream_prediction_frames
    from actionrec.video.stream import FrameChunk

    if not (trained / "model.onnx").exists():
        assert invoke("export", trained).exit_code == 0
    run = RunDir(trained)
    model, config = run.load_model(), run.config
    recognizer = Recognizer(trained / "model.onnx")
    video = next((workdir / "data" / "widen").glob("*.mp4"))
    training_frames = ViewDecoder(config.spec, 1, config.seed, bool(config.flip))(video)[0]
    messages = list(stream_prediction_frames(video, recognizer.spec, recognizer.limits))
    decoded = {int(i): frame for m in messages if isinstance(m, FrameChunk) for i, frame in zip(m.indices, m.frames)}
    serving_frames = np.stack([decoded[int(i)] for i in messages[0].clip])
    np.testing.assert_array_equal(training_frames, serving_frames)
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(serving_frames[None])), -1).numpy()
    np.testing.assert_allclose(recognizer.classify(serving_frames[None]), expected, atol=1e-4)


def test_a_model_without_metadata_is_refused(tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    from actionrec.runtime.recognizer import Recognizer

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelFileError, match="actionrec export"):
        Recognizer(path)


def test_export_refuses_when_runtimes_disagree(trained: Path, tmp_path: Path):
    from actionrec.errors import ExportError
    from actionrec.training.export import export_model
    from actionrec.training.runs import RunDir

    run = RunDir(trained)
    with pytest.raises(ExportError, match="disagree"):
        export_model(run.load_model(), run.model_card(), tmp_path / "m.onnx", tolerance=-1)
    assert not list(tmp_path.glob("*.onnx"))


def test_imagenet_weights_offline_names_the_alternatives(monkeypatch):
    from torchvision.models import MobileNet_V2_Weights

    from actionrec.errors import BackboneWeightsError
    from actionrec.training.model import ActionModel, ModelConfig, load_backbone_weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(MobileNet_V2_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(BackboneWeightsError, match="--backbone-weights none"):
        load_backbone_weights(ActionModel(ModelConfig(num_classes=3)), "imagenet")


def test_backbone_weights_from_a_local_file(tmp_path: Path):
    import torch
    from torchvision.models import mobilenet_v2

    from actionrec.training.model import ActionModel, ModelConfig, load_backbone_weights

    source = mobilenet_v2(weights=None)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(source.state_dict(), path)  # the layout of torchvision's downloadable file
    model = ActionModel(ModelConfig(num_classes=3))
    weights_id = load_backbone_weights(model, str(path))
    assert weights_id.startswith("file-")
    torch.testing.assert_close(model.backbone[0][0].weight, source.features[0][0].weight)


def _calibrated_backbone_file(path: Path) -> Path:
    """MobileNetV2 weights whose batch-norm statistics fit real inputs, so features are not ~0."""
    import torch
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    net = mobilenet_v2(weights=None).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, 32, 32))
    torch.save(net.state_dict(), path)
    return path


def test_frozen_backbone_features_are_cached_and_match_pytorch(workdir: Path, tmp_path: Path):
    import torch

    from actionrec.training.features import feature_extractor
    from actionrec.training.model import ActionModel, ModelConfig, load_backbone_weights

    weights = _calibrated_backbone_file(tmp_path / "backbone.pth")
    run = tmp_path / "frozen"
    args = ["train", workdir / "data", "--out", run, "--epochs", "1", "--frames", "4", "--image-size", "32",
            "--hidden-size", "32", "--backbone-weights", weights, "--cache-dir", tmp_path / "cache",
            "--train-views", "2", "--flip"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "frames/s" in result.output  # throughput of feature extraction is reported
    features = list((tmp_path / "cache").glob("*/*.npy"))
    assert features and all(np.load(f).shape[-1] == 1280 for f in features)
    again = invoke(*args)  # a second run finds every clip cached
    assert again.exit_code == 0 and "Caching" not in again.output

    model = ActionModel(ModelConfig(num_classes=8)).eval()
    load_backbone_weights(model, str(weights))
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 32, 32, 3), dtype=np.uint8)
    with torch.inference_mode():
        expected = model.forward_features(torch.from_numpy(frames)).numpy()
    got = feature_extractor(model, tmp_path)(frames).astype(np.float32)
    assert np.abs(expected).mean() > 1e-3
    np.testing.assert_allclose(got, expected, atol=2e-2 * np.abs(expected).max())


def test_ucf101_recipe_on_a_ucf101_shaped_tree(tmp_path: Path):
    """Official layout, split files and the HandstandPushups quirk, with the UCF101 defaults."""
    from actionrec.testing.ucf101 import make_fake_ucf101

    root = make_fake_ucf101(tmp_path / "UCF101", ["ApplyEyeMakeup", "HandstandPushups", "YoYo"],
                            groups=25, clips_per_group=1)
    weights = _calibrated_backbone_file(tmp_path / "backbone.pth")
    run = tmp_path / "ucf-run"
    args = ["train", root, "--dataset", "ucf101", "--split", "1", "--out", run, "--frames", "4",
            "--image-size", "32", "--hidden-size", "32", "--backbone-weights", weights,
            "--cache-dir", tmp_path / "cache", "--epochs", "2"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["labels"] == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert config["num_train"] == 3 * 18 and config["num_val"] == 3 * 7  # groups 8-25 / 1-7
    assert config["train"]["train_views"] == 2 and config["train"]["flip"] and config["train"]["test_views"] == 2
    assert "UCF101" in config["dataset"]
    evaluated = invoke("evaluate", run)
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((run / "metrics.json").read_text())["num_clips"] == 21
