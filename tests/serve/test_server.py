"""The HTTP API in-process (FastAPI's TestClient, real decode worker processes): contract, errors,
crash containment, v1, settings. `test_serve_command.py` runs `actionrec serve` as a real process
for what only a real socket and the command line show.

Three apps, one per settings group, started once for the module, each under its own base URL:
- `server`: a 1 MB upload limit and one CORS origin;
- `guarded_server`: an API key;
- `faulty_server`: a decode function that crashes, hangs or stalls on magic bodies, with one
  worker, one pending request at a time and a 2 s decode limit.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from actionrec.datasets.synth import render_clip
from actionrec.serve.app import create_app
from actionrec.serve.metrics import Metrics
from actionrec.serve.settings import ServerSettings
from actionrec.testing.faults import decode_with_a_bug
from actionrec.video.encode import write_video
from actionrec.video.probe import VIDEO_EXTENSIONS

API_KEY = "test-key-7f3a"
ALLOWED_ORIGIN = "http://allowed.example"
LABELS = ["grow", "shrink", "brighten", "darken"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("model") / "model.onnx", labels=LABELS)


def mp4_bytes(frames: np.ndarray, fps: float = 25.0) -> bytes:
    buffer = io.BytesIO()
    write_video(frames, buffer, fps, container_format="mp4")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clip() -> bytes:
    """A 2 s synthetic clip (about 0.2 MB)."""
    return mp4_bytes(render_clip("grow", np.random.default_rng(1), num_frames=50))


@pytest.fixture(scope="module")
def long_clip() -> bytes:
    """10 s: 5 s of one action, then 5 s of another."""
    rng = np.random.default_rng(2)
    frames = np.concatenate([render_clip("brighten", rng, num_frames=125),
                             render_clip("grow", rng, num_frames=125)])
    return mp4_bytes(frames)


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Server:
    url: str
    client: TestClient
    log_lines: LogLines

    def log(self) -> str:
        return "\n".join(self.log_lines.lines)


CLIENTS: dict[str, TestClient] = {}


def client_for(url: str) -> TestClient:
    return next(client for base, client in CLIENTS.items() if url.startswith(base))


def http_get(url: str, **kwargs) -> httpx.Response:
    kwargs.pop("timeout", None)
    return client_for(url).get(url, **kwargs)


def http_post(url: str, **kwargs) -> httpx.Response:
    kwargs.pop("timeout", None)
    return client_for(url).post(url, **kwargs)


def http_options(url: str, **kwargs) -> httpx.Response:
    return client_for(url).options(url, **kwargs)


@pytest.fixture(scope="module")
def servers(model_path: Path, clip: bytes, tmp_path_factory: pytest.TempPathFactory):
    """All three apps, started together and stopped at the end of the module."""
    examples = tmp_path_factory.mktemp("examples")
    (examples / "grow_0003.mp4").write_bytes(clip)
    (examples / "notes.txt").write_text("not offered: not a video")
    settings = {
        "main": (ServerSettings(model_path=model_path, max_upload_mb=1, workers=2, cors_origins=[ALLOWED_ORIGIN],
                                allowed_hosts=["main.test"], examples_dir=examples), {}),
        "guarded": (ServerSettings(model_path=model_path, workers=1, api_key=API_KEY, allowed_hosts=["guarded.test"]),
                    {}),
        "faulty": (ServerSettings(model_path=model_path, workers=1, max_pending=1, decode_timeout_s=2.0,
                                  allowed_hosts=["faulty.test"]), {"decode": decode_with_a_bug}),
    }
    log_lines = LogLines()
    logger = logging.getLogger("actionrec")
    logger.addHandler(log_lines)
    logger.setLevel(logging.INFO)
    running: dict[str, Server] = {}
    try:
        for name, (config, options) in settings.items():
            url = f"http://{name}.test"
            client = TestClient(create_app(config, **options), base_url=url)
            client.__enter__()
            CLIENTS[url] = client
            running[name] = Server(url, client, log_lines)
        yield running
    finally:
        for server in running.values():
            server.client.__exit__(None, None, None)
            CLIENTS.pop(server.url, None)
        logger.removeHandler(log_lines)


@pytest.fixture(scope="module")
def server(servers: dict[str, Server]) -> Server:
    return servers["main"]


@pytest.fixture(scope="module")
def guarded_server(servers: dict[str, Server]) -> Server:
    return servers["guarded"]


@pytest.fixture(scope="module")
def faulty_server(servers: dict[str, Server]) -> Server:
    return servers["faulty"]


def post_video(url: str, body: bytes, content_type: str | None = "video/mp4", **kwargs) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    headers |= kwargs.pop("headers", {})
    return http_post(url, content=body, headers=headers, **kwargs)


def assert_error(response: httpx.Response, status: int, *fragments: str, reason: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["detail", "reason"] and isinstance(body["detail"], str) and isinstance(body["reason"], str)
    for fragment in fragments:
        assert fragment in body["detail"]
    if reason is not None:
        assert body["reason"] == reason


# --------------------------------------------------------------------------- the original contract


@pytest.mark.parametrize("route", ["/", "/predict"])
def test_prediction_contract(server: Server, clip: bytes, route: str) -> None:
    response = post_video(server.url + route, clip)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"action", "confidence", "message"}
    assert body["action"] in LABELS
    assert isinstance(body["confidence"], float) and 0.0 <= body["confidence"] <= 1.0
    assert body["message"] == "Success"


@pytest.mark.parametrize("content_type", ["application/octet-stream", "video/quicktime", None])
def test_other_accepted_content_types(server: Server, clip: bytes, content_type: str | None) -> None:
    request = server.client.build_request("POST", server.url + "/", content=clip)
    if content_type:
        request.headers["Content-Type"] = content_type
    assert ("content-type" in request.headers) == bool(content_type)
    response = server.client.send(request)
    assert response.status_code == 200, response.text
    assert response.json()["action"] in LABELS


def test_empty_body_is_400(server: Server) -> None:
    assert_error(post_video(server.url + "/", b""), 400, "empty", reason="empty")


def test_wrong_content_type_is_415(server: Server, clip: bytes) -> None:
    assert_error(post_video(server.url + "/", clip, "application/json"), 415, "application/json",
                 reason="not_a_video_type")
    assert_error(post_video(server.url + "/predict", b"hello", "text/plain"), 415, "video/*")


def test_body_over_limit_is_413(server: Server) -> None:
    too_big = os.urandom(1024 * 1024 + 1)
    assert_error(post_video(server.url + "/", too_big), 413, "1.0 MB", reason="upload_too_large")

    def chunks():  # no Content-Length: the server must count while it reads
        for _ in range(3):
            yield too_big[: 512 * 1024]

    response = http_post(server.url + "/predict", content=chunks(), headers={"Content-Type": "video/mp4"},
                          timeout=60)
    assert_error(response, 413, "limit")


def test_garbage_bytes_are_422(server: Server) -> None:
    assert_error(post_video(server.url + "/", os.urandom(5000)), 422, "not a video file", reason="not_a_video")


def test_truncated_video_is_422(server: Server, clip: bytes) -> None:
    response = post_video(server.url + "/", clip[: len(clip) // 2])
    assert_error(response, 422)
    assert "video" in response.json()["detail"]


def test_server_keeps_serving_after_bad_uploads(server: Server, clip: bytes) -> None:
    for body in (b"", os.urandom(100), clip[:1000]):
        post_video(server.url + "/", body)
    assert post_video(server.url + "/", clip).status_code == 200
    assert http_get(server.url + "/healthz").json() == {"status": "ok"}


# --------------------------------------------------------------------------- v1


def test_v1_raw_body(server: Server, clip: bytes) -> None:
    response = post_video(server.url + "/v1/predictions", clip)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["action"] in LABELS and body["message"] == "Success"
    assert [item["action"] for item in body["top_k"]][0] == body["action"]
    assert len(body["top_k"]) == len(LABELS)  # default 5, and the model knows only 4
    confidences = [item["confidence"] for item in body["top_k"]]
    assert confidences == sorted(confidences, reverse=True)
    assert body["segments"] is None
    assert body["video"]["duration_s"] == pytest.approx(2.0, abs=0.05)
    assert body["video"]["fps"] == pytest.approx(25.0)
    assert (body["video"]["width"], body["video"]["height"]) == (128, 96)
    assert len(body["video"]["frames_used"]) == 4
    assert set(body["timings_ms"]) == {"decode", "inference", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["decode"]
    assert body["model"] == {"name": "untrained-test-model", "version": "0"}
    assert body["uncertain"] == (body["confidence"] < 0.5)
    if body["uncertain"]:  # an untrained model over 4 classes is rarely sure of anything
        assert any("none of the 4 actions" in warning for warning in body["warnings"])
    # the same warnings, each with a stable code: the page branches on the code, not on the words
    assert [item["text"] for item in body["warning_details"]] == body["warnings"]
    codes = [item["code"] for item in body["warning_details"]]
    assert set(codes) <= {"unsure", "decoding"} and codes.count("unsure") == int(body["uncertain"])


def test_v1_errors_about_the_video_say_the_problem_without_naming_it(server: Server, clip: bytes) -> None:
    for body in (os.urandom(5000), clip[: len(clip) // 2]):
        response = post_video(server.url + "/v1/predictions", body)
        assert response.status_code == 422, response.text
        answer = response.json()
        assert list(answer) == ["detail", "reason", "problem"]  # `problem` is added; the rest as on every route
        assert answer["detail"].startswith("the uploaded video: ")
        problem = answer["problem"]
        assert problem and problem[0].isupper() and not problem.lower().startswith("the uploaded video")
        assert answer["detail"].lower().endswith(problem.lower())
        assert post_video(server.url + "/", body).json() == {"detail": answer["detail"], "reason": answer["reason"]}


def test_v1_multipart_and_top_k(server: Server, clip: bytes) -> None:
    response = http_post(server.url + "/v1/predictions", params={"top_k": 2},
                          files={"file": ("clip.mp4", clip, "video/mp4")}, timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.json()["top_k"]) == 2

    no_file = http_post(server.url + "/v1/predictions", files={"other": ("x.mp4", clip, "video/mp4")},
                         timeout=60)
    assert_error(no_file, 400, "`file`", reason="bad_multipart")
    assert_error(post_video(server.url + "/v1/predictions?top_k=0", clip), 422, "top_k", reason="invalid_parameters")


def test_v1_segments_timeline(server: Server, long_clip: bytes) -> None:
    response = post_video(server.url + "/v1/predictions?segments=true", long_clip)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["video"]["duration_s"] == pytest.approx(10.0, abs=0.05)
    segments = body["segments"]
    assert segments and all(s["action"] in LABELS and 0 <= s["confidence"] <= 1 for s in segments)
    assert segments[0]["start_s"] == 0.0
    assert segments[-1]["end_s"] == pytest.approx(10.0, abs=0.05)
    for before, after in zip(segments, segments[1:]):
        assert before["end_s"] == pytest.approx(after["start_s"])
        assert before["action"] != after["action"]  # runs of one action are merged


def test_an_answer_names_the_model_that_made_it_when_the_served_model_is_switched_meanwhile(
        server: Server, clip: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    service = server.client.app.state.service  # type: ignore[attr-defined]
    recognizer = service.recognizer
    predict_stream = recognizer.predict_stream

    def switched_while_predicting(*args, **kwargs):
        prediction = predict_stream(*args, **kwargs)
        service.recognizer = SimpleNamespace(name="switched-in", version="9", labels=["only"])
        return prediction

    monkeypatch.setattr(recognizer, "predict_stream", switched_while_predicting)
    try:
        response = post_video(server.url + "/v1/predictions", clip)
    finally:
        service.recognizer = recognizer
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "untrained-test-model", "version": recognizer.version}
    assert body["action"] in LABELS


def test_model_and_service_routes(server: Server) -> None:
    model = http_get(server.url + "/v1/model").json()
    assert model["labels"] == LABELS
    assert model["name"] == "untrained-test-model" and model["dataset"] == "none (untrained)"
    assert model["api_key_required"] is False
    assert model["video_extensions"] == list(VIDEO_EXTENSIONS)  # what the page checks a file's name by
    assert http_get(server.url + "/healthz").json() == {"status": "ok"}
    ready = http_get(server.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["workers"] == {"running": 2, "configured": 2}
    assert "/v1/predictions" in http_get(server.url + "/openapi.json").json()["paths"]
    assert http_get(server.url + "/docs").status_code == 200


def test_page_and_static_files(server: Server) -> None:
    page = http_get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert http_get(f"{server.url}/static/{name}").status_code == 200


def test_metrics_count_requests(server: Server, clip: bytes) -> None:
    def count(text: str) -> float:
        found = re.search(r'actionrec_http_requests_total\{method="POST",route="/predict",status="200"\} (\S+)',
                          text)
        return float(found.group(1)) if found else 0.0

    before = http_get(server.url + "/metrics").text
    assert post_video(server.url + "/predict", clip).status_code == 200
    after = http_get(server.url + "/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    assert count(after.text) == count(before) + 1
    histogram_total = [line for line in after.text.splitlines()
                       if line.startswith("actionrec_http_request_duration_seconds_bucket{")
                       and 'route="/predict"' in line and 'le="+Inf"' in line]
    assert len(histogram_total) == 1
    assert re.search(r"^actionrec_predictions_in_progress 0(\.0)?$", after.text, re.MULTILINE)


def test_one_log_line_per_request_without_body(server: Server) -> None:
    marker = b"NOT-A-VIDEO-" + os.urandom(8).hex().encode()
    post_video(server.url + "/predict", marker)
    log = server.log()
    assert re.search(r"POST /predict 422 \d+\.\d ms", log)
    assert marker.decode() not in log


def test_cors_only_for_configured_origins(server: Server, guarded_server: Server) -> None:
    allowed = http_get(server.url + "/healthz", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    other = http_get(server.url + "/healthz", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers

    preflight = {"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-api-key"}
    response = http_options(server.url + "/v1/predictions", headers=preflight)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    refused = http_options(server.url + "/v1/predictions",
                            headers=preflight | {"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in refused.headers

    # No origins configured: no CORS headers for anyone.
    closed = http_get(guarded_server.url + "/healthz", headers={"Origin": ALLOWED_ORIGIN})
    assert "access-control-allow-origin" not in closed.headers


def test_metrics_exposition_format() -> None:
    metrics = Metrics()
    metrics.request("POST", "/", 200, 0.2)
    metrics.request("POST", "/", 200, 3.0)
    metrics.decode_failure("crashed")
    text = metrics.render().decode()
    assert 'actionrec_http_requests_total{method="POST",route="/",status="200"} 2.0' in text
    assert 'actionrec_http_request_duration_seconds_bucket{le="0.25",route="/"} 1.0' in text
    assert 'actionrec_http_request_duration_seconds_bucket{le="+Inf",route="/"} 2.0' in text
    assert 'actionrec_http_request_duration_seconds_count{route="/"} 2.0' in text
    assert 'actionrec_decode_failures_total{reason="crashed"} 1.0' in text
    assert "# TYPE actionrec_http_request_duration_seconds histogram" in text


# --------------------------------------------------------------------------- API key


def test_api_key_guards_prediction_routes(guarded_server: Server, clip: bytes) -> None:
    url = guarded_server.url
    for route in ("/", "/predict", "/v1/predictions"):
        assert_error(post_video(url + route, clip), 401, "API key", reason="api_key_missing")
    assert_error(post_video(url + "/", clip, headers={"X-API-Key": "wrong"}), 401, "wrong", reason="api_key_wrong")

    with_header = post_video(url + "/", clip, headers={"X-API-Key": API_KEY})
    assert with_header.status_code == 200 and with_header.json()["action"] in LABELS
    with_bearer = post_video(url + "/v1/predictions", clip, headers={"Authorization": f"Bearer {API_KEY}"})
    assert with_bearer.status_code == 200

    assert http_get(url + "/metrics").status_code == 401
    assert http_get(url + "/metrics", headers={"X-API-Key": API_KEY}).status_code == 200


def test_an_answer_given_before_the_body_is_read_closes_the_connection(guarded_server: Server, server: Server,
                                                                       clip: bytes) -> None:
    """Refused before its body was read, a request's connection is not kept for another (the server
    would have to read the rest first); an answer to a body read whole, or to a request without
    one, keeps it."""
    url = guarded_server.url
    refused = post_video(url + "/", clip)  # no API key: 401 from the headers
    assert refused.status_code == 401 and refused.headers["connection"] == "close"
    too_large = post_video(server.url + "/", b"\0" * (1024 * 1024 + 1))  # over its 1 MB limit
    assert too_large.status_code == 413 and too_large.headers["connection"] == "close"
    answered = post_video(url + "/", clip, headers={"X-API-Key": API_KEY})
    assert answered.status_code == 200 and "connection" not in answered.headers
    assert "connection" not in http_get(url + "/healthz").headers


def test_api_key_leaves_page_and_probes_open(guarded_server: Server) -> None:
    url = guarded_server.url
    for route in ("/", "/healthz", "/readyz", "/v1/model"):
        assert http_get(url + route).status_code == 200, route
    assert http_get(url + "/v1/model").json()["api_key_required"] is True


# --------------------------------------------------------------------------- failures in the decoder


def wait_for_workers(server: Server, running: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = http_get(server.url + "/readyz")
        if response.status_code == 200 and response.json()["workers"]["running"] >= running:
            return
        time.sleep(0.1)
    pytest.fail(f"no decode worker came back within {timeout} s:\n{server.log()}")


@pytest.mark.parametrize("magic", [b"CRASH", b"EXIT"])
def test_crashing_decoder_is_contained(faulty_server: Server, clip: bytes, magic: bytes) -> None:
    assert post_video(faulty_server.url + "/", clip).status_code == 200
    assert_error(post_video(faulty_server.url + "/", magic), 422, "could not be decoded", reason="decoder_crashed")
    assert http_get(faulty_server.url + "/healthz").status_code == 200

    response = post_video(faulty_server.url + "/", clip)  # waits for the replacement worker
    assert response.status_code == 200, response.text
    assert response.json()["action"] in LABELS
    wait_for_workers(faulty_server)
    assert 'actionrec_decode_failures_total{reason="decoder_crashed"}' in http_get(faulty_server.url + "/metrics").text


def test_stuck_decoder_times_out(faulty_server: Server, clip: bytes) -> None:
    started = time.monotonic()
    response = post_video(faulty_server.url + "/", b"HANG")
    assert_error(response, 422, "within 2 s", reason="decode_timeout")
    assert time.monotonic() - started < 10
    assert post_video(faulty_server.url + "/", clip).status_code == 200


def test_saturated_server_answers_503(faulty_server: Server, clip: bytes) -> None:
    wait_for_workers(faulty_server)
    slow_result: dict[str, httpx.Response] = {}
    slow = threading.Thread(target=lambda: slow_result.update(
        response=post_video(faulty_server.url + "/", b"SLOW" + clip)))
    slow.start()
    try:
        deadline = time.monotonic() + 10
        while http_get(faulty_server.url + "/readyz").json()["pending"] < 1:
            assert time.monotonic() < deadline, "the slow request never started"
            time.sleep(0.02)
        busy = post_video(faulty_server.url + "/", clip)
        assert_error(busy, 503, "busy", reason="busy")
        assert int(busy.headers["Retry-After"]) > 0
        # Health and model routes stay responsive while the upload is being processed.
        assert http_get(faulty_server.url + "/healthz", timeout=1).status_code == 200
        assert http_get(faulty_server.url + "/v1/model", timeout=1).status_code == 200
    finally:
        slow.join(30)
    assert slow_result["response"].status_code == 200, slow_result["response"].text
    assert post_video(faulty_server.url + "/", clip).status_code == 200


def test_a_bug_in_decoding_is_an_answer_and_keeps_the_worker(faulty_server: Server, clip: bytes) -> None:
    wait_for_workers(faulty_server)
    worker_pids = faulty_server.client.app.state.service.pool.pids()
    response = post_video(faulty_server.url + "/", b"BUG" + clip)
    assert_error(response, 422, "could not be decoded", reason="decoder_error")
    assert faulty_server.client.app.state.service.pool.pids() == worker_pids  # not replaced: it did not crash
    assert "AttributeError" in faulty_server.log()  # the traceback is in the server's log, not the answer
    assert "AttributeError" not in response.text
    assert post_video(faulty_server.url + "/", clip).status_code == 200


def test_other_hosts_are_refused(server: Server, clip: bytes) -> None:
    """A page elsewhere cannot reach a local server by pointing its own name at 127.0.0.1."""
    refused = server.client.get("/healthz", headers={"Host": "rebinding.attacker.example"})
    assert_error(refused, 400, "rebinding.attacker.example", reason="host_not_allowed")
    answered = post_video(server.url + "/", clip, headers={"Host": "main.test:8000"})
    assert answered.status_code == 200


def test_errors_carry_a_stable_reason_beside_detail(server: Server) -> None:
    missing = http_get(server.url + "/no-such-route")
    assert_error(missing, 404, reason="not_found")


def test_example_videos_are_listed_and_served_and_nothing_else(server: Server, clip: bytes) -> None:
    listed = http_get(server.url + "/v1/examples").json()
    assert listed == [{"name": "grow_0003.mp4", "label": "grow", "url": "examples/grow_0003.mp4",
                       "size_bytes": len(clip)}]
    assert http_get(server.url + "/examples/grow_0003.mp4").content == clip
    for name in ("notes.txt", "..%2F..%2Fetc%2Fpasswd", "missing.mp4"):
        assert http_get(f"{server.url}/examples/{name}").status_code == 404
    assert http_get(guarded_url := "http://guarded.test/v1/examples").json() == [], guarded_url


def test_api_keys_are_masked_in_the_log_lines_uvicorn_writes():
    import logging

    from actionrec.serve.logs import SafeLogText

    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 0, '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5000", "/v1/live?api_key=SECRET&top_k=3"), None)
    assert SafeLogText().filter(record)
    assert "SECRET" not in record.getMessage() and "api_key=[hidden]&top_k=3" in record.getMessage()
    # a percent-encoded name is the same parameter to the server, so it is hidden too
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 0, '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5000", "/v1/live?top_k=3&%61pi%5Fkey=SECRET"), None)
    assert SafeLogText().filter(record)
    assert "SECRET" not in record.getMessage() and "%61pi%5Fkey=[hidden]" in record.getMessage()
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 0, '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5000", "/v1/live?api_key=abc;SECRET'\"&top_k=3"), None)
    assert SafeLogText().filter(record)
    assert "SECRET" not in record.getMessage() and "&top_k=3" in record.getMessage()
