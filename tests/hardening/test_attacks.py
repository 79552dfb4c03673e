"""What an attack on a real server found, second pass: image bombs, the disk, places held by
trickling, failed writes, multipart fields, metrics labels, log injection, descriptors, the live
route, keys in logs, a video of exactly the limit, drain overruns, request framing, Host values
and suspended workers. Each test failed before its fix."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from actionrec.testing.attacks import png_bomb
from actionrec.testing.media import encode, numbered_frames
from actionrec.testing.processes import free_port, serve_command
from actionrec.video import DecodeLimits, probe

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
from fastapi.testclient import TestClient  # noqa: E402

from actionrec.serve.app import create_app  # noqa: E402
from actionrec.serve.settings import ServerSettings  # noqa: E402

LABELS = ["grow", "shrink", "brighten", "darken"]


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png_bomb(12000, 12000))  # 144 million pixels: 432 MB as RGB, more as frames
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("attacks") / "model.onnx", labels=LABELS)


@pytest.fixture(scope="module")
def clip() -> bytes:
    return encode(numbered_frames(30), fps=25)


@pytest.fixture
def client(model_path: Path):
    settings = ServerSettings(model_path=model_path, workers=1, allowed_hosts=["testserver"], max_upload_mb=5,
                              upload_budget_mb=1)
    with TestClient(create_app(settings)) as client:
        yield client


def post(client: TestClient, body, **headers) -> httpx.Response:
    return client.post("/v1/predictions", content=body, headers={"Content-Type": "video/mp4", **headers})


# --------------------------------------------------------------------------- 1. image bombs


def test_an_image_bomb_is_refused_from_its_header_without_decoding(bomb: Path):
    """Peak memory of a fresh process reading the bomb as a live frame, probing it as an upload,
    and decoding it through FFmpeg directly (past our header check), each with the pixel limit."""
    script = f"""
import io
from actionrec.video import probe
from actionrec.video.decode import read_image
from actionrec.video.probe import open_container
data = open({str(bomb)!r}, "rb").read()
said = []
for attempt in (lambda: read_image(data, 32), lambda: probe({str(bomb)!r}),
                lambda: next(open_container(io.BytesIO(data), 4096 * 2304).decode(video=0))):
    try:
        attempt()
        said.append("decoded")
    except Exception as exc:
        said.append(type(exc).__name__ + ": " + str(exc))
# VmHWM: this program's own peak (ru_maxrss would carry over the forking test process's)
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) // 1024)
print("\\n".join(said))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    peak_mb, *said = result.stdout.splitlines()
    assert said[0].startswith("FrameTooLargeError") and "12000x12000" in said[0] and "nothing was decoded" in said[0]
    assert said[1].startswith("FrameTooLargeError") and "12000x12000" in said[1]
    assert said[2] != "decoded"  # FFmpeg's own limit refuses the frame before allocating it
    assert int(peak_mb) < 250, f"reading the bomb took {peak_mb} MB"


def test_an_image_bomb_gets_422_as_an_upload_and_ends_a_live_stream(client: TestClient, bomb: Path):
    answer = post(client, bomb.read_bytes())
    assert answer.status_code == 422 and answer.json()["reason"] == "frame_too_large", answer.text
    with client.websocket_connect("/v1/live") as live:
        assert live.receive_json()["type"] == "ready"
        live.send_bytes(bomb.read_bytes())
        message = live.receive_json()
    assert message["type"] == "error" and message["reason"] == "frame_too_large", message


# --------------------------------------------------------------------------- 2. disk budget, trickling, busy


def test_uploads_past_the_budget_are_refused_at_once_and_give_their_bytes_back(client: TestClient, clip: bytes):
    service = client.app.state.service
    never = post(client, os.urandom(2 * 1024 * 1024))  # under the 5 MB upload limit, over the 1 MB budget
    assert never.status_code == 507 and never.json()["reason"] == "storage_full", never.text
    service.budget.used = 700 * 1024  # other uploads in progress hold most of it
    try:
        refused = post(client, os.urandom(500 * 1024))
        assert refused.status_code == 503 and refused.json()["reason"] == "uploads_over_budget", refused.text
        assert refused.headers["Retry-After"]

        def streamed():  # refused as the body passes the budget (declared or not)
            for _ in range(8):
                yield bytes(64 * 1024)

        refused = post(client, streamed())
        assert refused.status_code == 503 and refused.json()["reason"] == "uploads_over_budget"
        assert service.budget.used == 700 * 1024
    finally:
        service.budget.used = 0
    assert post(client, clip).status_code == 200
    assert service.budget.used == 0
    assert 'actionrec_uploads_refused_total{reason="uploads_over_budget"} 2.0' in client.get("/metrics").text


def test_the_busy_refusal_comes_before_the_body_when_it_can_be_known(client: TestClient, clip: bytes):
    service = client.app.state.service
    limit = service.settings.max_pending
    service.pending, service.uploads = limit, limit  # every place taken, as many uploads queued for them
    try:
        received = []

        def body():
            received.append(1)
            yield clip

        answer = post(client, body())
    finally:
        service.pending, service.uploads = 0, 0
    assert answer.status_code == 503 and answer.json()["reason"] == "busy"
    assert service.budget.used == 0


@pytest.mark.server
def test_a_client_that_sends_fast_then_trickles_is_cut_off(model_path: Path, tmp_path: Path):
    options = [str(model_path), "--workers", "1", "--upload-idle-timeout-s", "1", "--upload-min-kbps", "8"]
    with serve_command(options, tmp_path / "server.log") as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp4\r\n"
                         b"Content-Length: 10000000\r\n\r\n" + bytes(256 * 1024))  # 32 s of credit on average
            started = time.monotonic()
            answer = b""
            sock.settimeout(0.7)
            while b"\r\n\r\n" not in answer and time.monotonic() - started < 20:
                try:
                    sock.sendall(b"x")  # a byte now and then, never idle for the 1 s limit
                    answer += sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
            waited = time.monotonic() - started
    assert b" 408 " in answer.split(b"\r\n")[0], answer[:200]
    assert waited < 8, f"the trickle held its place for {waited:.1f} s"


# --------------------------------------------------------------------------- 3. a write that fails


def test_a_failed_write_is_507_json_logged_once_and_counted(client: TestClient, caplog):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    body = os.urandom(300 * 1024)
    files = {"file": ("clip.mp4", body, "video/mp4")}
    with caplog.at_level(logging.WARNING, logger="actionrec"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (128 * 1024, hard))  # a full disk, as a file size limit
        try:
            raw = post(client, body)
            multipart = client.post("/v1/predictions", files=files)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    for answer in (raw, multipart):
        assert answer.status_code == 507 and answer.json()["reason"] == "storage_full", answer.text
        assert answer.headers["Retry-After"]
    written = [r for r in caplog.records if "could not be written" in r.getMessage()]
    assert len(written) == 2 and not any(r.exc_info for r in written)
    assert 'actionrec_uploads_refused_total{reason="storage_full"} 2.0' in client.get("/metrics").text
    assert client.app.state.service.budget.used == 0


# --------------------------------------------------------------------------- 4. multipart fields


def test_multipart_text_fields_are_few_and_small(client: TestClient, clip: bytes):
    many = client.post("/v1/predictions", files={"file": ("clip.mp4", clip, "video/mp4")},
                       data={f"field{i}": "x" for i in range(9)})
    assert many.status_code == 400 and many.json()["reason"] == "bad_multipart"
    large = client.post("/v1/predictions", files={"file": ("clip.mp4", clip, "video/mp4")},
                        data={"note": "x" * (64 * 1024)})
    assert large.status_code == 400 and large.json()["reason"] == "bad_multipart"
    fine = client.post("/v1/predictions", files={"file": ("clip.mp4", clip, "video/mp4")}, data={"note": "hi"})
    assert fine.status_code == 200, fine.text


# --------------------------------------------------------------------------- 5-6. metrics and the log


def test_made_up_methods_do_not_grow_the_metrics(client: TestClient):
    for i in range(30):
        client.request(f"MADEUP{i}", "/healthz")
    metrics = client.get("/metrics").text
    assert "MADEUP" not in metrics and 'method="other"' in metrics


def test_a_request_cannot_forge_a_log_line(client: TestClient, caplog):
    with caplog.at_level(logging.INFO, logger="actionrec.server"):
        client.get("/%0D%0A2099-01-01%2000:00:00%20INFO%20actionrec.server:%20forged")
    lines = "\n".join(record.getMessage() for record in caplog.records).splitlines()
    assert not any(line.startswith("2099") for line in lines)
    assert any("\\r\\n2099-01-01" in line for line in lines)


# --------------------------------------------------------------------------- 7. descriptors


@pytest.mark.server
def test_connections_are_bounded_below_the_descriptor_limit(model_path: Path, tmp_path: Path):
    port = free_port()
    log_path = tmp_path / "server.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONREC_")}
    limit = 256
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "actionrec.cli", "serve", str(model_path), "--workers", "1", "--max-uploads", "16",
             "--header-timeout-s", "4", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=environment,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
    silent: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        for _ in range(limit + 50):  # more silent connections than the server has descriptors
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        answer = httpx.get(url + "/healthz", timeout=3)  # answered at once: 200, or 503 while full
        assert answer.status_code in (200, 503), answer.text
        if answer.status_code == 503:
            assert answer.json()["reason"] == "too_many_connections"
        for sock in silent:
            sock.close()
        silent.clear()
        time.sleep(1)
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    finally:
        for sock in silent:
            sock.close()
        process.terminate()
        process.wait(timeout=20)
    log_text = log_path.read_text(errors="replace")
    assert "out of system resource" not in log_text
    assert len(log_text.splitlines()) < 60, f"{len(log_text.splitlines())} log lines"


# --------------------------------------------------------------------------- 8. the live route, origins


def test_live_text_messages_do_not_keep_a_stream_alive(model_path: Path):
    settings = ServerSettings(model_path=model_path, workers=1, allowed_hosts=["testserver"], live_idle_timeout_s=1)
    with TestClient(create_app(settings)) as client, client.websocket_connect("/v1/live") as live:
        assert live.receive_json()["type"] == "ready"
        started = time.monotonic()
        for _ in range(12):  # text for 3 s: the stream ends 1 s after the last frame (none), not the last text
            live.send_text("keep me")
            time.sleep(0.25)
        message = live.receive_json()
        assert message["type"] == "error" and message["reason"] == "idle"
        assert time.monotonic() - started < 3.6


def test_live_top_k_that_is_not_a_number_gets_an_error_message(client: TestClient):
    with client.websocket_connect("/v1/live?top_k=%C2%B2") as live:  # "²": a digit to isdigit, not to int
        message = live.receive_json()
    assert message["type"] == "error" and message["reason"] == "invalid_parameters" and "top_k" in message["detail"]


def test_pages_on_other_origins_cannot_use_the_server(client: TestClient, clip: bytes):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/v1/live", headers={"Origin": "https://evil.example"}) as live:
            live.receive_json()
    assert refused.value.code == 1008
    with client.websocket_connect("/v1/live", headers={"Origin": "http://testserver"}) as live:
        assert live.receive_json()["type"] == "ready"  # the server's own page
    for headers in ({}, {"Content-Type": "multipart/form-data; boundary=x"}):  # "simple" requests
        answer = client.post("/", content=clip, headers=headers | {"Origin": "https://evil.example"})
        assert answer.status_code == 403 and answer.json()["reason"] == "origin_not_allowed"
    assert client.post("/", content=clip, headers={"Origin": "http://testserver"}).status_code == 200
    assert client.post("/", content=clip).status_code == 200  # not a browser: no Origin
    # behind a reverse proxy that passes on the name the browser reached
    proxied = {"Origin": "https://actionrec.example.com", "X-Forwarded-Host": "actionrec.example.com"}
    assert client.post("/", content=clip, headers=proxied).status_code == 200


def test_the_page_behind_a_proxy_is_its_own_origin(model_path: Path, clip: bytes):
    settings = ServerSettings(model_path=model_path, workers=1, allowed_hosts=["127.0.0.1", "my_app.example"])
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        page = {"Origin": "https://my_app.example"}  # the proxy passed Host: 127.0.0.1:8000 on
        assert client.post("/", content=clip, headers=page).status_code == 200
        assert client.post("/", content=clip, headers={"Origin": "https://evil.example"}).status_code == 403
        assert client.get("/healthz", headers={"Host": "my_app.example:8000"}).status_code == 200


def test_the_budget_holds_what_has_arrived_and_says_when_an_upload_can_never_fit():
    from actionrec.errors import UploadError
    from actionrec.serve.uploads import UploadBudget

    budget = UploadBudget(1000)
    with budget.hold() as slow, budget.hold() as other:
        slow.check_room(900)  # a declared length that fits now holds nothing yet
        assert budget.used == 0
        slow.grow_to(600)
        with pytest.raises(UploadError) as busy:
            other.check_room(600)
        assert busy.value.status == 503 and busy.value.reason == "uploads_over_budget"
        with pytest.raises(UploadError) as never:
            other.check_room(1001)
        assert never.value.status == 507 and never.value.reason == "storage_full"
    assert budget.used == 0


# --------------------------------------------------------------------------- 10. exactly the limit


def test_a_video_of_exactly_the_duration_limit_is_accepted():
    # 90 frames at 30 fps: their times add up to 3.0000000000000004 s
    assert probe(encode(numbered_frames(90, 16, 16), fps=30), DecodeLimits(max_duration_s=3)).info.duration_s == 3
    with pytest.raises(Exception, match="longer than the limit"):  # a frame more is over it
        probe(encode(numbered_frames(91, 16, 16), fps=30), DecodeLimits(max_duration_s=3))


# --------------------------------------------------------------------------- 11. drain overrun


@pytest.mark.server
def test_a_request_cut_short_by_the_drain_timeout_gets_503_json(model_path: Path, tmp_path: Path):
    port = free_port()
    log_path = tmp_path / "server.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONREC_")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "actionrec.cli", "serve", str(model_path), "--workers", "1",
                                    "--drain-timeout-s", "1", "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp4\r\n"
                         b"Content-Length: 1000000\r\n\r\n" + bytes(1000))
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 503 " in head.split(b"\r\n")[0] and b"retry-after" in head.lower(), answer[:300]
    assert json.loads(body)["reason"] == "shutting_down"
    log_text = log_path.read_text(errors="replace")
    assert "Traceback" not in log_text and "CancelledError" not in log_text


# --------------------------------------------------------------------------- 12-13. framing, Host, workers


@pytest.fixture(scope="module")
def real_server(model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    with serve_command([str(model_path), "--workers", "1"], tmp_path_factory.mktemp("real") / "server.log") as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def exchange(address: tuple[str, int], request: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


@pytest.mark.parametrize("request_bytes", [
    b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Folded: a\r\n b\r\n\r\n",
], ids=["content-length-and-chunked", "bare-lf", "folded-header"])
@pytest.mark.server
def test_ambiguous_framing_is_refused_and_the_connection_closed(real_server, request_bytes: bytes):
    answer = exchange(real_server, request_bytes)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1  # nothing pipelined behind it was answered
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["reason"] == "bad_framing"


@pytest.mark.server
def test_pipelined_requests_that_are_well_framed_are_answered(real_server):
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = exchange(real_server, request + request[:-2] + b"Connection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer


@pytest.mark.server
def test_a_body_sent_after_an_early_answer_is_not_taken_for_a_request_head(real_server):
    """Answered 415 from its headers, a request's connection ends (Connection: close): its body (bare
    LFs and all) and anything after it are read and dropped, never taken for a request's head."""
    with socket.create_connection(real_server, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\n")
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 415 ") and b"connection: close" in answer.lower(), answer[:300]
        sock.sendall(b"a\nb\n\ncd" + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     + b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert b"HTTP/1.1" not in rest, rest[:300]  # neither the body nor what followed it was answered


@pytest.mark.server
@pytest.mark.parametrize("host", ["127.0.0.1:evil", "localhost:80@evil.example", "localhost:", "localhost:8000:1"])
def test_host_values_that_only_start_like_this_server_are_refused(real_server, host: str):
    answer = exchange(real_server, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400 ") and b"host_not_allowed" in answer, answer[:300]


def test_a_suspended_worker_is_worker_lost_not_the_files_fault(model_path: Path, clip: bytes):
    settings = ServerSettings(model_path=model_path, workers=1, decode_timeout_s=1.5, allowed_hosts=["testserver"])
    with TestClient(create_app(settings)) as client:
        (pid,) = client.app.state.service.pool.pids()
        os.kill(pid, signal.SIGSTOP)
        try:
            answer = post(client, clip)
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        assert answer.status_code == 503 and answer.json()["reason"] == "worker_lost", answer.text
        assert answer.headers["Retry-After"]


def test_teaching_job_options_are_read_small_after_the_key(model_path: Path, tmp_path: Path):
    settings = ServerSettings(model_path=model_path, workers=1, allowed_hosts=["testserver"], api_key="k",
                              data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        huge = b'{"name": "' + b"x" * (64 * 1024) + b'"}'
        assert client.post("/v1/teach/jobs", content=huge).status_code == 401  # the key first
        key = {"X-API-Key": "k"}
        too_large = client.post("/v1/teach/jobs", content=huge, headers=key)
        assert too_large.status_code == 413 and too_large.json()["reason"] == "upload_too_large"
        for body in (b"not json", b"[1, 2]"):
            refused = client.post("/v1/teach/jobs", content=body, headers=key)
            assert refused.status_code == 422 and refused.json()["reason"] == "invalid_parameters"
        no_clips = client.post("/v1/teach/jobs", json={"name": "mine"}, headers=key)
        assert no_clips.status_code == 422 and no_clips.json()["reason"] == "too_few_actions"
