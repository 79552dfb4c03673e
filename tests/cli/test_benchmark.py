"""`actionrec benchmark` (a model's answers against the decoding floor, side by side) and `actionrec
benchmark-train` (the cache and training steps on this machine, projected to a UCF101 epoch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from actionrec.testing.media import long_video
from actionrec.testing.processes import run_checked

LABELS = ["grow", "shrink", "brighten", "darken"]

pytest.importorskip("torch", reason="making test models and training need the train extra (torch)")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("engine") / "model.onnx", labels=LABELS, image_size=48,
                                clip_duration_s=2.0)


def test_the_benchmark_reports_ratios_side_by_side(model_path: Path, tmp_path: Path):
    short, clip = tmp_path / "short.mp4", tmp_path / "clip.mp4"
    short.write_bytes(long_video(3))
    clip.write_bytes(long_video(12))
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "benchmark", str(model_path), str(short), str(clip),
                             "--repeats", "1", "--http", "--http-workers", "2", "--http-workers", "1",
                             "--folder", str(tmp_path), "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    measured = report["videos"][1]
    assert set(measured["seconds"]) == {"sequential_decode", "answer", "answer_grid_2x2", "answer_decoding_from_start",
                                        "answer_floor",
                                        "clip_network", "clip_read", "timeline", "timeline_encode", "timeline_floor",
                                        "timeline_cores_allow", "answer_beside_explained", "explained_answer"}
    assert set(measured["cpu_seconds"]) == {"clip_network", "clip_network_sharing_cores", "clip_read",
                                            "timeline_one_thread"}
    assert set(measured["ratios"]) == {"answer / sequential decode", "answer / answer floor",
                                       "answer decoding from start / answer", "2 x 2 grid answer / answer",
                                       "timeline / timeline floor",
                                       "timeline / the larger of decode and encoder", "timeline / what the cores allow",
                                       "explained answer / answer"}
    assert all(value > 0 for value in measured["ratios"].values())
    assert "cores" in report["machine"]
    rows = {row["what"]: row for row in report["speed_table"]}
    assert {"the network alone on one clip", "one answer in process",
            "its 2 x 2 grid's answers (4 cells and the whole)", "the same answer over HTTP, one client",
            "HTTP, 8 clients", "HTTP, 8 clients, against the cores",
            "HTTP, 8 clients, against the cores the load generator leaves",
            "the same answer over HTTP, one client, --workers 1", "HTTP, 8 clients, --workers 1",
            "HTTP, 8 clients, --workers 1, against the cores",
            "HTTP, 8 clients, --workers 1, against the cores the load generator leaves",
            "predict over a folder of 2 videos",
            "predict over a folder of 2 videos, against the cores", "timeline of clip.mp4",
            "timeline of clip.mp4, against the cores", "one answer on clip.mp4",
            "one answer explained (--explain)"} == set(rows)
    assert all(row["ratio"] > 0 for row in rows.values() if row["ratio"] is not None)
    for workers in ("2", "1"):  # each server's one client beside answers in process, and 8 clients at once
        http = report["http"][workers]
        assert http["1"]["statuses"] == {"200": 15} and http["1"]["in_process_ms"] > 0
        assert http["8"]["statuses"] == {"200": 3 * 48} and http["8"]["load_generator_cpu_ms"] > 0
    assert report["folder"]["answered"] == 2


def test_benchmark_regions_builds_videos_of_held_out_clips_and_scores_them(tmp_path: Path):
    from actionrec.testing.regions import QUARTER_COLOURS, colour_mosaic, taught_colours_model

    model = taught_colours_model(tmp_path / "model")
    for name in QUARTER_COLOURS:  # a UCF101-shaped tree: groups 20 and 21 held out, 8 not
        for group in (8, 20, 21):
            colour_mosaic(tmp_path / "clips" / name / f"v_{name}_g{group:02d}_c01.avi", [[name]], cell=(80, 60),
                          frames=20 + group, seed=group)
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "benchmark-regions", str(model),
                             str(tmp_path / "clips"), "--groups", "20-21", "--out", str(tmp_path / "built"),
                             "--mosaics", "2", "--pairs", "3", "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mosaic"] == {"videos": 2, "regions": 8, "named_right": 1.0, "named_right_alone": 1.0}
    assert report["pair"] == {"videos": 3, "regions": 6, "named_right": 1.0, "named_right_alone": 1.0}
    assert report["actions"] == sorted(QUARTER_COLOURS) and report["people"]["cells"] == 8
    assert sorted(path.name for path in (tmp_path / "built").iterdir())[:3] == ["mosaic00.mp4", "mosaic01.mp4",
                                                                                 "pair00.mp4"]
    with av.open(str(tmp_path / "built" / "mosaic00.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (640, 480)  # four 320 x 240 clips


# --------------------------------------------------------------------------- benchmark-train


def benchmark_command(data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "actionrec", "benchmark-train", str(data), "--frames", "4", "--image-size", "32",
            "--width-mult", "0.35", "--batch-size", "4", "--clips", "8", "--steps", "2", "--workers", "1",
            "--json", *extra]


@pytest.mark.slow
def test_benchmark_train_reports_cache_and_steps(synthetic_dataset: Path):
    result = json.loads(run_checked(benchmark_command(synthetic_dataset)).stdout)
    assert result["runtime"]["device"] == "cpu" and result["cache"]["clips"] == 8
    assert result["training"]["steps"] == 2 and result["training"]["steps_per_s"] > 0
    assert result["projected_ucf101_split1_epoch_s"] > 0


def test_benchmark_train_stops_when_no_clip_can_be_read(tmp_path: Path):
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for index in range(3):
            (tmp_path / "data" / label / f"{label}_{index}.mp4").write_bytes(b"not a video" * 10)
    result = subprocess.run(benchmark_command(tmp_path / "data"), capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0 and "could be read" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
