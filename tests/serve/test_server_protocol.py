"""Slow and stalled clients against a real `actionrec serve` with short limits: connections that send
nothing or their headers a byte at a time are closed, a stalled body gets 408 and frees its place,
slow bodies lock no one out, and the API key never reaches the log."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from actionrec.testing.processes import serve_command

pytestmark = pytest.mark.server  # each test runs a real `actionrec serve`

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
API_KEY = "hardening-key"


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
