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
    assert [set(row) for row in rows][0] == {"path", "action", "confidence", "top_k", "uncertain", "error", "reason"}
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
