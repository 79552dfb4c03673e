"""`actionrec predict` over many videos: folders and patterns, resumable JSON Lines and CSV results,
exit codes, and a file that fails among good ones."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from actionrec.testing.media import video_without_a_decoder
from actionrec.testing.processes import run_cli

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
LABELS = ["grow", "shrink", "brighten", "darken"]


def test_predict_takes_folders_and_patterns_and_writes_resumable_results(model_path: Path, videos: Path,
                                                                         tmp_path: Path):
    output = tmp_path / "results.jsonl"
    first = run_cli("predict", model_path, videos / "clips" / "grow", f"{videos}/clips/s*/*.mp4",
                    "--output", output, "--workers", "2")
    assert first.returncode == 1, first.stderr  # the broken file
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 5  # grow/ (2 clips and the broken one) and shrink/ (2 clips), each once
    answered = [row for row in rows if row["action"]]
    assert len(answered) == 4 and all(row["action"] in LABELS and row["top_k"] for row in answered)
    broken = next(row for row in rows if row["error"])
    assert broken["path"].endswith("broken.mp4") and broken["reason"] == "not_a_video"
    assert "4 answered, 1 failed (not_a_video: 1)" in " ".join(first.stderr.split())

    again = run_cli("predict", model_path, videos / "clips", "--output", output, "--workers", "2")
    assert "5 skipped (answered, or failed for good" in " ".join(again.stderr.split())  # the broken one too
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len([row for row in rows if row["action"]]) == 16  # the 12 others now, the 4 not again
    assert len(rows) == len({row["path"] for row in rows}) == 17  # one row per video

    # a failure a retry can mend (here: a timeout on a busy machine) is tried again, its row replaced
    index = next(i for i, row in enumerate(rows) if row["action"])
    timed_out = rows[index]["path"]
    rows[index] = {"path": timed_out, "action": None, "error": "took longer than 300 s", "reason": "decode_timeout"}
    output.write_text("".join(json.dumps(row) + "\n" for row in rows))
    third = run_cli("predict", model_path, videos / "clips", "--output", output, "--workers", "0")
    assert "1 answered, 0 failed, 16 skipped" in " ".join(third.stderr.split()), third.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 17 and next(row for row in rows if row["path"] == timed_out)["action"] in LABELS

    broken_alone = run_cli("predict", model_path, videos / "clips" / "grow" / "broken.mp4")
    assert broken_alone.stderr.count("broken.mp4") == 1, broken_alone.stderr  # named once, not twice


def test_predict_writes_csv(model_path: Path, videos: Path, tmp_path: Path):
    output = tmp_path / "results.csv"
    result = run_cli("predict", model_path, videos / "clips" / "widen", "--output", output, "--workers", "0")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(output.open()))
    assert [set(row) for row in rows][0] == {"path", "region", "box", "action", "confidence", "top_k", "uncertain",
                                             "error", "reason"}
    assert len(rows) == 2 and all(row["action"] in LABELS and json.loads(row["top_k"]) for row in rows)


def test_predict_exit_codes(model_path: Path, videos: Path, tmp_path: Path):
    clip = next((videos / "clips" / "darken").glob("*.mp4"))
    assert run_cli("predict", model_path, clip).returncode == 0
    assert run_cli("predict", model_path, tmp_path / "nowhere").returncode == 2  # a usage error
    empty = tmp_path / "empty"
    empty.mkdir()
    no_videos = run_cli("predict", model_path, empty)
    assert no_videos.returncode == 2 and "no videos found" in no_videos.stderr
    no_model = run_cli("predict", tmp_path / "missing.onnx", clip)
    assert no_model.returncode == 3 and "no such model file" in no_model.stderr


def test_predict_goes_on_after_a_file_that_fails(model_path: Path, clip: bytes, tmp_path: Path):
    bad = tmp_path / "no-decoder.mkv"
    bad.write_bytes(video_without_a_decoder())
    good = tmp_path / "good.mp4"
    good.write_bytes(clip)
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "predict", str(model_path), str(bad), str(good),
                             "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["file"] == str(bad) and lines[0]["reason"] == "undecodable"
    assert lines[1]["file"] == str(good) and lines[1]["action"] in LABELS


def test_predict_regions_json_and_results_rows(model_path: Path, tmp_path: Path):
    from actionrec.testing.regions import colour_mosaic

    mosaic = colour_mosaic(tmp_path / "clips" / "mosaic.mp4", [["red", "blue"], ["green", "yellow"]])
    shown = run_cli("predict", model_path, mosaic, "--regions", "grid:2x2", "--json")
    assert shown.returncode == 0, shown.stderr
    answer = json.loads(shown.stdout)
    assert [(r["id"], r["box"]) for r in answer["regions"]] == [
        ("r1c1", [0, 0, 64, 48]), ("r1c2", [64, 0, 64, 48]), ("r2c1", [0, 48, 64, 48]), ("r2c2", [64, 48, 64, 48])]
    assert all(r["action"] in LABELS and r["top_k"] and "uncertain" in r for r in answer["regions"])
    assert answer["action"] in LABELS  # the whole video's answer too

    text = run_cli("predict", model_path, mosaic, "--regions", "0,0,0.5,1", "--segments")
    assert "zone1     0,0,64,96" in text.stdout, text.stdout
    assert "0.00-   2.00 s" in text.stdout  # its timeline: one segment, the 2 s clip

    output = tmp_path / "results.csv"
    first = run_cli("predict", model_path, tmp_path / "clips", "--regions", "grid:2x1", "--output", output)
    assert first.returncode == 0, first.stderr
    rows = list(csv.DictReader(output.open()))
    assert [row["region"] for row in rows] == ["", "r1c1", "r1c2"]  # the video's own row, then one per region
    assert json.loads(rows[2]["box"]) == [64, 0, 64, 96] and rows[2]["action"] in LABELS
    again = run_cli("predict", model_path, tmp_path / "clips", "--regions", "grid:2x1", "--output", output)
    assert "1 skipped" in again.stderr and len(list(csv.DictReader(output.open()))) == 3


@pytest.mark.parametrize(("regions", "says"), [
    ("grid:9x9", "81 cells, more than the 16 regions"),
    ("10,10,0,5", "has no size"),
    ("detector:missing.onnx", "no such file"),
    ("people --segments", "people are answered without one"),
])
def test_predict_refuses_bad_regions_before_reading(model_path: Path, tmp_path: Path, regions: str, says: str):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"not a video: the regions are refused before it is read")
    result = run_cli("predict", model_path, video, "--regions", *regions.split())
    assert result.returncode == 2 and says in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr


def test_a_box_outside_one_videos_frame_fails_that_video(model_path: Path, tmp_path: Path):
    from actionrec.testing.regions import colour_mosaic

    video = colour_mosaic(tmp_path / "small.mp4", [["red"]])
    result = run_cli("predict", model_path, video, "--regions", "0,0,100,100", "--json")
    assert result.returncode == 1, result.stderr
    line = json.loads(result.stdout)
    assert line["reason"] == "bad_regions" and "reaches outside the 64x48 frame" in line["error"]
