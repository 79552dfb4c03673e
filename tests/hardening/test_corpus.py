"""A corpus of bad inputs through every entry: `read_clip` (in a guarded child), `actionrec
predict`, and a served `POST /`. Each gives a typed error or an answer: never a traceback,
never a 5xx, and the server stays healthy after each. Also a bounded run of the fuzzer."""

from __future__ import annotations

import io
import json
import multiprocessing
import subprocess
import sys
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

from actionrec.datasets.synth import render_clip
from actionrec.testing.fuzz import FAILURES, GuardedReader, fuzz
from actionrec.testing.processes import serve_command
from actionrec.video.encode import write_video

pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
pytestmark = pytest.mark.slow


def encoded(container: str, **options) -> bytes:
    frames = render_clip("darken", np.random.default_rng(7), width=64, height=48, num_frames=40)
    buffer = io.BytesIO()
    write_video(frames, buffer, 25, container_format=container, **options)
    return buffer.getvalue()


def still(format_name: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buffer, format=format_name)
    return buffer.getvalue()


def audio_only() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes((np.sin(np.arange(8000) / 10) * 3000).astype(np.int16).tobytes())
    return buffer.getvalue()


def huge_frames() -> bytes:
    """Two frames of 4128 x 2336: over the 4096 x 2304 limit for untrusted uploads."""
    buffer = io.BytesIO()
    write_video(np.zeros((2, 2336, 4128, 3), np.uint8), buffer, 25, container_format="mp4")
    return buffer.getvalue()


def claims_hours(data: bytes) -> bytes:
    """An MP4 whose headers say it lasts far longer than it does (mvhd, tkhd and mdhd durations)."""
    out = bytearray(data)
    for box, offset in ((b"mvhd", 20), (b"tkhd", 24), (b"mdhd", 20)):
        at = out.find(box)
        if at >= 0:
            out[at + offset : at + offset + 4] = (0x7FFFFFF0).to_bytes(4, "big")
    return bytes(out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(11)
    files: dict[str, bytes] = {
        "empty.mp4": b"",
        "text.mp4": b"this is not a video\n" * 50,
        "random.mp4": rng.integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        "still.png": still("PNG"),
        "still.jpg": still("JPEG"),
        "still.gif": still("GIF"),
        "audio-only.wav": audio_only(),
        "huge-frames.mp4": huge_frames(),
    }
    for name, container, options in (("clip.mp4", "mp4", {"gop": 10, "bframes": True}), ("clip.mov", "mov", {}),
                                     ("clip.mkv", "matroska", {"audio": True}),
                                     ("clip.webm", "webm", {"codec": "libvpx"}),
                                     ("clip.avi", "avi", {"codec": "mpeg4"}), ("clip.ts", "mpegts", {})):
        data = encoded(container, **options)
        files[name] = data
        stem, suffix = name.split(".")
        files[f"{stem}-header-only.{suffix}"] = data[:512]
        for fraction in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95):
            files[f"{stem}-cut-{int(fraction * 100):02d}.{suffix}"] = data[: int(len(data) * fraction)]
        for flip in range(4):
            damaged = bytearray(data)
            for position in rng.integers(0, len(data), 40):
                damaged[position] ^= 1 << int(rng.integers(8))
            files[f"{stem}-flipped-{flip}.{suffix}"] = bytes(damaged)
    files["claims-hours.mp4"] = claims_hours(files["clip.mp4"])
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("corpus-model") / "model.onnx")


def test_read_clip_gives_an_answer_or_a_typed_error(corpus: Path):
    context = multiprocessing.get_context("forkserver")
    reader = GuardedReader(context, timeout_s=20)
    try:
        outcomes = {path.name: reader.read(path.read_bytes()) for path in sorted(corpus.iterdir())}
    finally:
        reader.close()
    failed = {name: outcome for name, outcome in outcomes.items() if outcome.split(":")[0] in FAILURES}
    assert not failed, failed
    assert outcomes["clip.mp4"] == "ok" and outcomes["empty.mp4"] == "video_error:empty"
    assert outcomes["still.png"] == "video_error:not_a_video"
    assert outcomes["audio-only.wav"] == "video_error:no_video_stream"
    assert outcomes["huge-frames.mp4"] == "video_error:frame_too_large"


def test_predict_answers_or_explains_every_file(corpus: Path, model_path: Path):
    files = sorted(corpus.iterdir())
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "predict", str(model_path), *map(str, files),
                             "--json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["file"] for line in lines) == sorted(str(path) for path in files)  # each once, as done
    for line in lines:
        assert ("action" in line) != ("error" in line), line
        if "error" in line:
            assert line["reason"] != "internal_error", line


@pytest.mark.server
def test_the_server_answers_every_file_with_200_or_4xx_and_stays_healthy(corpus: Path, model_path: Path,
                                                                        tmp_path: Path):
    with serve_command([str(model_path), "--workers", "2"], tmp_path / "server.log") as url:
        for path in sorted(corpus.iterdir()):
            response = httpx.post(url + "/", content=path.read_bytes(), headers={"Content-Type": "video/mp4"},
                                  timeout=120)
            assert response.status_code == 200 or 400 <= response.status_code < 500, (path.name, response.text)
            if response.status_code != 200:
                assert set(response.json()) == {"detail", "reason"}
            assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        ready = httpx.get(url + "/readyz", timeout=5).json()
        assert ready["status"] == "ready"


def test_a_bounded_fuzz_run_finds_nothing(tmp_path: Path):
    counts = fuzz(200, seed=2024, timeout_s=20, findings=tmp_path / "findings")
    assert sum(counts.values()) == 200
    assert counts["unexpected"] == 0 and counts["timeout"] == 0, counts
    assert not list((tmp_path / "findings").glob("*unexpected*"))
