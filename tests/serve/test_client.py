"""The Python client (`actionrec.client`): against a real `actionrec serve`, and against a server that
is busy and asks it to come back later."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from actionrec.testing.processes import serve_command

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
pytestmark = pytest.mark.server  # the client against a real `actionrec serve`
LABELS = ["grow", "shrink", "brighten", "darken"]


@pytest.fixture(scope="module")
def model_path(untrained_model: Path) -> Path:
    return untrained_model


def test_the_client_against_a_real_server(model_path: Path, videos: Path, tmp_path: Path):
    from actionrec.client import Client, ClientError

    clip = next((videos / "clips" / "narrow").glob("*.mp4"))
    with serve_command([str(model_path), "--workers", "1"], tmp_path / "server.log",
                       {"ACTIONREC_API_KEY": "client-key"}) as url:
        client = Client(url, api_key="client-key")
        assert client.ready() and client.model()["labels"] == LABELS
        answer = client.predict(clip, top_k=2, segments=True)
        assert answer["action"] in LABELS and len(answer["top_k"]) == 2 and answer["segments"]
        assert set(client.action(clip.read_bytes())) == {"action", "confidence", "message"}
        with open(clip, "rb") as file:
            assert client.predict(file)["action"] in LABELS
        with pytest.raises(ClientError) as refused:
            Client(url, api_key="wrong").predict(clip)
        assert refused.value.status == 401 and refused.value.reason == "api_key_wrong"
        with pytest.raises(ClientError) as bad:
            client.predict(b"not a video")
        assert bad.value.status == 422 and bad.value.reason == "not_a_video"


def test_the_client_waits_and_retries_when_the_server_is_busy(tmp_path: Path):
    from actionrec.client import Client, ClientError

    calls = []

    class Busy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(self.path)
            if len(calls) < 3:
                body, status, headers = b'{"detail": "busy", "reason": "busy"}', 503, {"Retry-After": "0.2"}
            else:
                body, status, headers = b'{"action": "grow", "confidence": 0.9, "message": "Success"}', 200, {}
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert Client(url, retries=3).action(b"video")["action"] == "grow" and len(calls) == 3
        calls.clear()
        with pytest.raises(ClientError) as gave_up:
            Client(url, retries=1).action(b"video")
        assert gave_up.value.status == 503 and gave_up.value.retry_after == 0.2
    finally:
        server.shutdown()
