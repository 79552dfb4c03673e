"""`actionrec predict --explain`: the short line and the moments for people, `explanation` in --json
for programs, and the pictures of --explain-out."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from actionrec.testing.media import LABELS, long_video
from actionrec.testing.processes import run_cli

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 frames of 64 pixels: 2 x 2 cells in each frame's map."""
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("explain") / "model.onnx", labels=LABELS, num_frames=6,
                                image_size=64, fitted_batch_norm=True)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    path.write_bytes(long_video(2))
    return path


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_json_carries_the_explanation_programs_read(model_path: Path, video: Path):
    result = run_cli("predict", model_path, video, "--explain", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    explanation = answer["explanation"]
    assert explanation["action"] == answer["action"]
    moments = explanation["moments"]
    assert [m["time_s"] for m in moments] == answer["video"]["frame_times_s"] == sorted(m["time_s"] for m in moments)
    assert all(isinstance(m["weight"], float) for m in moments)
    grid = explanation["map"]
    assert (grid["rows"], grid["cols"]) == (2, 3)  # a 4:3 video: the 2 x 2 square and the sides beyond it
    assert len(grid["weights"]) == 2 and all(len(row) == 3 for row in grid["weights"])
    plain = json.loads(run_cli("predict", model_path, video, "--json").stdout)
    assert "explanation" not in plain and plain["action"] == answer["action"]


def test_people_read_a_short_line_and_the_pictures(model_path: Path, video: Path, tmp_path: Path):
    result = run_cli("predict", model_path, video, "--explain", "--explain-out", tmp_path / "why")
    assert result.returncode == 0, result.stderr
    assert "why: " in result.stdout and "without it:" in result.stdout
    strip, overlay = tmp_path / "why" / "clip.moments.png", tmp_path / "why" / "clip.map.png"
    width, height = png_size(strip)
    assert width > 6 * 96 and height > 96  # six thumbnails, bars beneath
    assert png_size(overlay) == (480, 360)  # the whole frame as shown, its longer side 480


def test_explain_out_needs_explain(model_path: Path, video: Path, tmp_path: Path):
    result = run_cli("predict", model_path, video, "--explain-out", tmp_path)
    assert result.returncode == 2 and "add --explain" in result.stderr


def test_evaluate_measures_how_faithful_explanations_are(model_path: Path, tmp_path: Path):
    """`evaluate MODEL.onnx DATA --explain`: deletion on the validation clips; with --unknown, pointing
    (2 x 2 mosaics) and splicing. An untrained model's figures mean nothing: their shape is tested."""
    import numpy as np

    from actionrec.datasets.synth import render_clip
    from actionrec.testing.media import colour_clip
    from actionrec.video.encode import write_video

    rng = np.random.default_rng(4)
    for label in LABELS:
        (tmp_path / "data" / label).mkdir(parents=True)
        for n in range(3):
            write_video(render_clip(label, rng, width=64, height=48, num_frames=30),
                        tmp_path / "data" / label / f"{label}_g{n:02d}.mp4", 25)
    unknown = [colour_clip(tmp_path / "other" / f"{n}.mp4", (40 * n, 90, 160), seed=n) for n in range(3)]
    result = run_cli("evaluate", model_path, tmp_path / "data", "--explain", "--explain-count", "2",
                     "--unknown", unknown[0].parent, "--json")
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)["models"][0]["explanations"]
    deletion = measured["deletion"]
    assert deletion["clips"] > 0 and deletion["removed"] == 4 and 0 <= deletion["top_beats_random"] <= 1
    assert measured["pointing"]["mosaics"] == 2 and 0 <= measured["pointing"]["strongest_quadrant_known"] <= 1
    assert measured["splicing"]["videos"] == 2
    human = run_cli("evaluate", model_path, tmp_path / "data", "--explain")
    assert human.returncode == 0 and "deletion" in human.stdout and "need --unknown" in human.stdout
