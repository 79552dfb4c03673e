"""Live recognition: sampling a source as it plays, `actionrec watch` on a file, and the WebSocket
route with its protocol, its limits and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from actionrec.datasets.synth import render_clip
from actionrec.video.encode import write_video

LABELS = ["grow", "shrink", "brighten", "darken"]
pytest.importorskip("torch", reason="making test models needs the train extra (torch)")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("live") / "model.onnx", labels=LABELS, clip_duration_s=3.0)


def jpeg(image: np.ndarray) -> bytes:
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = image.shape[1], image.shape[0], "yuvj420p"
    codec.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(packet) for packet in codec.encode(frame)) + b"".join(bytes(p) for p in codec.encode(None))


def test_live_sampling_answers_at_least_twice_a_second(model_path: Path):
    from actionrec.runtime.recognizer import Recognizer
    from actionrec.runtime.watching import LiveRecognizer

    recognizer = Recognizer(model_path)
    live = LiveRecognizer(recognizer, update_interval_s=0.5)
    # Samples of a 3 s, 4-frame window are 0.75 s apart: sampled at half that, read every other one.
    assert live.step_s == pytest.approx(0.375)
    image = np.zeros((32, 32, 3), np.uint8)
    answers, sampled = [], 0
    for i in range(25 * 6):  # six seconds of a 25 fps camera
        t = i / 25
        if live.due(t):
            answer = live.add(image, t)
            sampled += 1
            if answer is not None:
                answers.append(answer)
                if len(answers) == 1:  # a window reads every other sample: it reaches over 7 of them
                    assert sampled == (4 - 1) * 2 + 1
    times = [a.time_s for a in answers]
    assert times[0] <= 3.0 and max(np.diff(times)) <= 0.5
    assert all(a.action in LABELS and 0 <= a.confidence <= 1 for a in answers)


def test_watch_follows_a_file_at_its_own_speed(model_path: Path, tmp_path: Path):
    clip = tmp_path / "clip.mp4"
    rng = np.random.default_rng(0)
    write_video(np.concatenate([render_clip("grow", rng, num_frames=60), render_clip("darken", rng, num_frames=65)]),
                clip, 25)  # 5 s
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "watch", str(model_path), str(clip), "--json"],
                            capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["event"] == "started" and lines[-1]["event"] == "ended"
    answers = [line for line in lines if "action" in line]
    assert len(answers) >= 4 and all(a["action"] in LABELS for a in answers)
    assert max(np.diff([a["time_s"] for a in answers])) <= 0.5  # at least two answers a second
    assert max(a["lag_s"] for a in answers) <= 0.5
    assert elapsed >= 4.5  # played at its own speed, not as fast as it decodes


def test_watch_names_a_source_that_is_not_there(model_path: Path, tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "watch", str(model_path),
                             str(tmp_path / "nothing.mp4")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "no such file, camera or stream URL" in " ".join(result.stderr.split())


# --------------------------------------------------------------------------- the WebSocket route


@pytest.fixture(scope="module")
def client(model_path: Path):
    from actionrec.serve.app import create_app
    from actionrec.serve.settings import ServerSettings

    settings = ServerSettings(model_path=model_path, workers=1, live_idle_timeout_s=1.0, max_live=2,
                              allowed_hosts=["testserver"])
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    images = render_clip("brighten", np.random.default_rng(4), width=96, height=72, num_frames=40)
    return [jpeg(image) for image in images]


def test_live_stream_warms_up_then_predicts(client: TestClient, frames: list[bytes]):
    with client.websocket_connect("/v1/live") as socket:
        ready = socket.receive_json()
        assert ready["type"] == "ready" and ready["labels"] == LABELS
        assert ready["sample_interval_s"] <= 0.5 and ready["window_s"] == pytest.approx(3.0)
        replies = []
        for frame in frames[:14]:
            socket.send_bytes(frame)
            time.sleep(ready["sample_interval_s"])  # a camera sending at the rate asked for
            replies.append(socket.receive_json())
        socket.send_bytes(frames[15])
        socket.send_bytes(frames[16])  # too soon after the one before: skipped, and said so
        assert socket.receive_json()["type"] == "prediction"
        assert socket.receive_json() == {"type": "skipped"}
        kinds = [reply["type"] for reply in replies if reply["type"] != "skipped"]
        assert kinds[0] == "warming_up" and "prediction" in kinds
        assert kinds.index("prediction") == replies[0]["needed"] - 1
        prediction = [reply for reply in replies if reply["type"] == "prediction"][-1]
        assert prediction["action"] in LABELS and len(prediction["top_k"]) == 3 and prediction["lag_s"] < 0.5


def test_a_frame_that_is_not_an_image_ends_the_stream(client: TestClient):
    with client.websocket_connect("/v1/live") as socket:
        socket.receive_json()
        socket.send_bytes(b"this is not a picture" * 10)
        error = socket.receive_json()
        assert error == {"type": "error", "detail": error["detail"], "reason": "not_an_image"}
        assert "JPEG" in error["detail"]
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 1003
    assert client.get("/healthz").status_code == 200


def test_a_stalled_stream_is_closed(client: TestClient):
    with client.websocket_connect("/v1/live") as socket:
        socket.receive_json()
        error = socket.receive_json()  # nothing sent: the idle limit (1 s here) ends it
        assert error["reason"] == "idle"
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 4408


def test_live_needs_the_api_key_when_there_is_one(model_path: Path, frames: list[bytes]):
    from actionrec.serve.app import create_app
    from actionrec.serve.settings import ServerSettings

    settings = ServerSettings(model_path=model_path, workers=1, api_key="live-key", allowed_hosts=["testserver"])
    with TestClient(create_app(settings)) as client:
        with client.websocket_connect("/v1/live") as socket:
            assert socket.receive_json()["reason"] == "api_key"
            with pytest.raises(WebSocketDisconnect) as closed:
                socket.receive_json()
            assert closed.value.code == 1008
        with client.websocket_connect("/v1/live?api_key=live-key") as socket:
            assert socket.receive_json()["type"] == "ready"
        with client.websocket_connect("/v1/live", headers={"X-API-Key": "live-key"}) as socket:
            assert socket.receive_json()["type"] == "ready"


def test_watch_lists_as_many_actions_as_asked(model_path: Path, tmp_path: Path):
    clip = tmp_path / "clip.mp4"
    write_video(render_clip("grow", np.random.default_rng(2), num_frames=100), clip, 25)
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "watch", str(model_path), str(clip), "--json",
                             "--top-k", "2", "--as-fast-as-possible"], capture_output=True, text=True, timeout=120)
    answers = [json.loads(line) for line in result.stdout.splitlines() if '"action"' in line]
    assert answers and all(len(answer["top_k"]) == 2 for answer in answers)
    bad = subprocess.run([sys.executable, "-m", "actionrec.cli", "watch", str(model_path), str(clip),
                          "--update-interval", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "more than 0 s" in bad.stderr
