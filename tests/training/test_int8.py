"""int8 where it pays: `export --int8` writes a calibrated, quantized copy that says so, and
`evaluate MODEL.onnx DATA_DIR` compares model files on the same clips without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actionrec.datasets.synth import generate_dataset
from actionrec.testing.extras import BLOCKER
from actionrec.testing.processes import run_cli

pytest.importorskip("torch", reason="training the model to quantize needs the train extra (torch)")
pytestmark = pytest.mark.slow

TINY = ["--frames", "4", "--image-size", "32", "--width-mult", "0.35", "--hidden-size", "16", "--batch-size", "8",
        "--backbone-weights", "none", "--epochs", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("int8")
    generate_dataset(root / "data", clips_per_class=5, seed=6, width=64, height=48)
    trained = run_cli("train", root / "data", "--out", root / "run", "--cache-dir", root / "cache", *TINY)
    assert trained.returncode == 0, trained.stderr
    exported = run_cli("export", root / "run", "--int8", "--calibration-clips", "6")
    assert exported.returncode == 0, exported.stderr
    printed = " ".join(exported.stdout.split())
    # 8 validation clips cannot show that the copy disagrees on at most 5% of clips: it is not kept
    assert "No int8 copy kept" in printed and "of 8 validation clips" in printed
    assert not (root / "run" / "model.int8.onnx").exists()
    write_copy_anyway(root / "run", root / "data")
    return root / "run"


def write_copy_anyway(run: Path, data: Path) -> None:
    """The copy export made and refused, made again as export makes it, for the tests of what it is."""
    from actionrec.evaluation.model_files import validation_clips
    from actionrec.runtime.recognizer import Recognizer
    from actionrec.training.quantize import quantize_model

    calibration = validation_clips(data, Recognizer(run / "model.onnx"), limit=6, training=True)
    quantize_model(run / "model.onnx", calibration.frames, run / "model.int8.onnx",
                   calibrated_on=f"{len(calibration.frames)} training clips of {data}")


def test_the_int8_copy_says_what_it_is_and_reads_like_the_float_model(run: Path):
    from actionrec.runtime.recognizer import Recognizer
    from actionrec.video import read_clip

    fp32, int8 = Recognizer(run / "model.onnx"), Recognizer(run / "model.int8.onnx")
    assert fp32.card.precision == "fp32" and int8.card.precision == "int8"
    assert int8.card.quantization["calibration_clips"] == 6
    assert "training clips" in int8.card.quantization["calibrated_on"]
    assert int8.describe()["precision"] == "int8" and int8.labels == fp32.labels
    clip = next((run.parent / "data").rglob("*.mp4"))
    frames = read_clip(clip, fp32.spec).frames
    float_features, int8_features = fp32.encode(frames), int8.encode(frames)
    assert np.corrcoef(float_features.ravel(), int8_features.ravel())[0, 1] > 0.95  # quantized, not broken
    assert int8.classify(frames[None]).shape == (1, len(fp32.labels))
    assert int8.predict(clip).action in fp32.labels
    rules = fp32.unknown_rule, int8.unknown_rule  # "none of these", measured for each file on the same clips
    assert [rule.score for rule in rules] == ["feature_similarity"] * 2 and np.allclose(rules[0].means, rules[1].means)
    assert "validation clips" in rules[1].calibrated_on
    comparison = json.loads((run / "int8_comparison.json").read_text())
    assert comparison["num_clips"] == 8 and 0 <= comparison["models"][1]["agreement_with_first"] <= 1


def test_a_model_file_is_evaluated_without_torch_and_matches_the_runs_own_evaluation(run: Path, tmp_path: Path):
    script = tmp_path / "without_torch.py"
    script.write_text(BLOCKER)
    result = subprocess.run([sys.executable, str(script), "evaluate", str(run / "model.onnx"), str(run.parent / "data"),
                             "--compare", str(run / "model.int8.onnx"), "--json", "--unknown",
                             str(run.parent / "data" / "grow"), "--timelines", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    evaluated = json.loads(result.stdout)
    assert evaluated["num_clips"] == 8
    fp32, int8 = evaluated["models"]
    assert "agreement_with_first" in int8 and fp32["top1"] is not None
    for entry in (fp32, int8):
        flags = entry["unknown"]
        assert flags["unknown_clips"] == 5 and 0 <= flags["known_flagged"] <= 1 and "fixed_0.5" in flags
        timelines = entry["timelines"]
        assert timelines["videos"] == 2 and timelines["clips_per_video"] == 4
        for rule in ("evidence", "windows"):
            assert 0 <= timelines[rule]["time_right"] <= 1 and timelines[rule]["boundary_error_median_s"] >= 0

    with_torch = run_cli("evaluate", run)
    assert with_torch.returncode == 0, with_torch.stderr
    assert json.loads((run / "metrics.json").read_text())["top1"] == pytest.approx(fp32["top1"])


def test_evaluating_a_model_file_needs_its_dataset(run: Path):
    result = run_cli("evaluate", run / "model.onnx")
    assert result.returncode == 2 and "DATA_DIR is needed" in result.stderr


def test_export_writes_the_int8_copy_by_default_and_keeps_it_only_where_it_loses_few_clips(run: Path):
    from actionrec.modelfile.card import read_card
    from actionrec.runtime.precision import KEEP_RULE, keeps_copy

    exported = run_cli("export", run, "--calibration-clips", "6")
    assert exported.returncode == 0, exported.stderr
    comparison = json.loads((run / "int8_comparison.json").read_text())
    lost, clips = comparison["models"][1]["lost_vs_first"], comparison["num_clips"]
    assert comparison["keep_rule"] == KEEP_RULE and 0 <= comparison["loss_bound"] <= 1
    printed = " ".join(exported.stdout.split())
    if keeps_copy(lost, clips):
        quantization = read_card(run / "model.int8.onnx").quantization
        assert quantization["clips_lost"] == lost and quantization["keep_rule"] == KEEP_RULE
        assert "serve, predict and watch run it where this CPU has VNNI or AMX" in printed
    else:
        assert not (run / "model.int8.onnx").exists() and "No int8 copy kept" in printed
        assert not comparison["kept"]
    assert run_cli("export", run, "--no-int8").returncode == 0


def test_a_kept_copy_carries_its_own_unknown_threshold_and_the_rule_it_was_kept_by(run: Path, tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch):
    import shutil

    from actionrec.modelfile.card import read_card
    from actionrec.runtime import precision
    from actionrec.training.runs import RunDir

    model = tmp_path / "model.onnx"
    shutil.copy(run / "model.onnx", model)
    monkeypatch.setattr(precision, "keeps_copy", lambda lost, clips, gained=0: True)  # 8 clips never pass it
    copy, comparison = RunDir(run).export_int8(model, calibration_clips=6)
    assert copy == tmp_path / "model.int8.onnx" and comparison["kept"]
    fp32, int8 = read_card(model), read_card(copy)
    quantization = int8.quantization or {}
    assert quantization["keep_rule"] == precision.KEEP_RULE and quantization["compared_on_clips"] == 8
    assert {"clips_lost", "clips_gained", "loss_bound", "top1_fp32", "top1_int8"} <= quantization.keys()
    assert fp32.unknown_rule is not None and fp32.unknown_rule.means is not None
    assert int8.unknown_rule is not None and int8.unknown_rule.means is not None  # measured on the copy itself
    assert int8.unknown_rule.to_dict()["means"] == fp32.unknown_rule.to_dict()["means"]  # the same class means
