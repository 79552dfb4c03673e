"""Defects found by trying the service as an attacker would, each checked so it cannot come back:
slow and stalled clients, decoding errors nobody listed, empty keys, keys in logs, damaged model
metadata, misleading limits."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from actionrec.datasets.synth import render_clip
from actionrec.errors import ModelFileError, UndecodableVideoError, VideoTooLongError
from actionrec.video import ClipSpec, DecodeLimits, read_clip
from actionrec.video.encode import write_video
from tests.conftest import encode, numbered_frames, serve_command

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
LABELS = ["grow", "shrink", "brighten", "darken"]
API_KEY = "hardening-key"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("hardening") / "model.onnx", labels=LABELS)


@pytest.fixture(scope="module")
def clip() -> bytes:
    buffer = io.BytesIO()
    write_video(render_clip("grow", np.random.default_rng(1), num_frames=50), buffer, 25, container_format="mp4")
    return buffer.getvalue()


def video_without_a_decoder() -> bytes:
    """A Matroska file whose video names a codec FFmpeg has no decoder for."""
    data = encode(numbered_frames(10), container_format="matroska")
    at = data.index(b"V_MPEG4/ISO/AVC")
    return data[:at] + b"V_XXXXX/ISO/AVC" + data[at + 15:]


# --------------------------------------------------------------------------- reading videos


def test_a_video_no_decoder_can_read_is_a_typed_error():
    with pytest.raises(UndecodableVideoError, match="format FFmpeg cannot decode"):
        read_clip(video_without_a_decoder(), ClipSpec(4, 32))


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


def test_a_duration_just_over_the_limit_says_by_how_much():
    data = encode(numbered_frames(51), fps=25)  # 2.04 s
    with pytest.raises(VideoTooLongError, match=r"lasts 2\.04 s, longer than the limit of 2 s"):
        read_clip(data, ClipSpec(4, 32), limits=DecodeLimits(max_duration_s=2))


def test_model_metadata_of_the_wrong_types_is_a_clear_error(model_path: Path, tmp_path: Path):
    import onnx

    from actionrec.inference import Recognizer

    for key, value, said in (("labels", 5, "'labels' must be a non-empty list"),
                             ("image_size", 0, "image_size must be between 16 and 1024"),
                             ("num_frames", "8", "'num_frames' must be a whole number")):
        graph = onnx.load(str(model_path))
        card = json.loads(graph.metadata_props[0].value)
        card[key] = value
        graph.metadata_props[0].value = json.dumps(card)
        path = tmp_path / f"bad-{key}.onnx"
        onnx.save(graph, str(path))
        with pytest.raises(ModelFileError, match=said) as raised:
            Recognizer(path)
        assert str(path) in str(raised.value) and "metadata is damaged" in str(raised.value)


def test_a_prediction_that_fails_leaves_no_reading_thread_behind(model_path: Path, clip: bytes, monkeypatch):
    from actionrec.inference import Recognizer

    recognizer = Recognizer(model_path)

    def broken(frames):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(recognizer, "head", broken)
    long = encode(numbered_frames(400), fps=25)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            recognizer.predict(long)
    deadline = time.monotonic() + 5
    while any(t.name == "actionrec-read-ahead" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "reading threads were left running"
        time.sleep(0.05)


# --------------------------------------------------------------------------- configuration


def test_an_empty_api_key_is_refused_not_taken_as_none(model_path: Path):
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ACTIONREC_")}
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "serve", str(model_path)], capture_output=True,
                            text=True, timeout=60, env=environment | {"ACTIONREC_API_KEY": ""})
    assert result.returncode == 1
    assert "set but empty" in " ".join(result.stderr.split())


# --------------------------------------------------------------------------- slow and stalled clients


@pytest.fixture(scope="module")
def guarded(model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real server with short limits: 1 s for headers, 1 s without a byte of a body, two predictions
    at once, and an API key."""
    folder = tmp_path_factory.mktemp("guarded")
    options = [str(model_path), "--workers", "1", "--max-pending", "2", "--header-timeout-s", "1",
               "--upload-idle-timeout-s", "1", "--upload-min-kbps", "8"]
    log = folder / "server.log"
    with serve_command(options, log, {"ACTIONREC_API_KEY": API_KEY}) as url:
        yield url, log


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (reading whatever it sends)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_connections_that_send_nothing_or_headers_slowly_are_closed(guarded):
    url, _ = guarded
    idle = connect(url)
    slow = connect(url)
    stop = threading.Event()

    def trickle() -> None:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n":
            if stop.is_set():
                return
            try:
                slow.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)

    threading.Thread(target=trickle, daemon=True).start()
    try:
        assert closed_within(idle, 5) and closed_within(slow, 5)
    finally:
        stop.set()
        idle.close()
        slow.close()


def test_a_stalled_body_gets_408_and_frees_its_place(guarded, clip: bytes):
    url, _ = guarded
    sock = connect(url)
    request = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp4\r\nX-API-Key: {API_KEY}\r\n"
               f"Content-Length: {len(clip)}\r\n\r\n").encode()
    sock.sendall(request + clip[:1000])  # and then nothing
    sock.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["reason"] == "upload_timeout"


def test_slow_bodies_do_not_lock_others_out(guarded, clip: bytes):
    """More slow uploads than there are places for predictions: a normal upload still gets its answer."""
    url, _ = guarded
    stop = threading.Event()
    slow = []
    for _ in range(6):
        sock = connect(url)
        sock.sendall((f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp4\r\nX-API-Key: {API_KEY}\r\n"
                      f"Content-Length: {len(clip)}\r\n\r\n").encode())
        slow.append(sock)

    def dribble() -> None:
        position = 0
        while not stop.is_set() and position < len(clip):
            for sock in slow:
                try:
                    sock.send(clip[position : position + 2])
                except OSError:
                    pass
            position += 2
            time.sleep(0.5)

    threading.Thread(target=dribble, daemon=True).start()
    try:
        time.sleep(0.5)
        response = httpx.post(url + "/", content=clip, timeout=60,
                              headers={"Content-Type": "video/mp4", "X-API-Key": API_KEY})
        assert response.status_code == 200, response.text
    finally:
        stop.set()
        for sock in slow:
            sock.close()


def test_the_api_key_never_reaches_the_log(guarded):
    from websockets.sync.client import connect as ws_connect

    url, log = guarded
    with ws_connect(url.replace("http://", "ws://") + f"/v1/live?api_key={API_KEY}") as socket_:
        assert json.loads(socket_.recv())["type"] == "ready"
    time.sleep(0.3)
    text = log.read_text()
    assert "/v1/live" in text and API_KEY not in text
