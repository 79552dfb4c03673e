"""`actionrec serve` as a real process on a real socket: flags and ACTIONREC_* variables reach the
settings (an empty API key refused), the original contract works over HTTP as existing clients send
it, and the API docs work offline."""

from __future__ import annotations

import http.client
import inspect
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from actionrec.datasets.synth import render_clip
from actionrec.testing.processes import serve_command
from actionrec.video.encode import write_video

pytestmark = pytest.mark.server  # each test runs a real `actionrec serve`

API_KEY = "test-key-command"
ORIGIN = "http://from-env.example"
LABELS = ["grow", "shrink", "brighten", "darken"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """The command with the model and three settings from the environment, two from flags."""
    pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    folder = tmp_path_factory.mktemp("serve-command")
    model = make_untrained_model(folder / "model.onnx", labels=LABELS)
    environment = {"ACTIONREC_MODEL": str(model), "ACTIONREC_API_KEY": API_KEY, "ACTIONREC_CORS_ORIGINS": ORIGIN,
                   "ACTIONREC_MAX_UPLOAD_MB": "50"}
    with serve_command(["--max-upload-mb", "1", "--workers", "1"], folder / "server.log", environment) as url:
        yield url


@pytest.fixture(scope="module")
def clip() -> bytes:
    buffer = io.BytesIO()
    write_video(render_clip("grow", np.random.default_rng(1), num_frames=50), buffer, 25, container_format="mp4")
    return buffer.getvalue()


def test_contract_over_a_real_socket(served: str, clip: bytes) -> None:
    response = httpx.post(served + "/", content=clip, timeout=60,
                          headers={"Content-Type": "video/mp4", "X-API-Key": API_KEY})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"action", "confidence", "message"} and body["action"] in LABELS


def test_variables_and_flags_reach_the_settings(served: str, clip: bytes) -> None:
    assert httpx.post(served + "/", content=clip, headers={"Content-Type": "video/mp4"}).status_code == 401
    too_big = httpx.post(served + "/", content=os.urandom(1024 * 1024 + 1), timeout=60,
                         headers={"Content-Type": "video/mp4", "X-API-Key": API_KEY})
    assert too_big.status_code == 413 and "1.0 MB" in too_big.json()["detail"]  # the flag beats the variable
    cors = httpx.get(served + "/healthz", headers={"Origin": ORIGIN})
    assert cors.headers.get("access-control-allow-origin") == ORIGIN
    ready = httpx.get(served + "/readyz").json()
    assert ready["workers"] == {"running": 1, "configured": 1}
    assert httpx.get(served + "/v1/model").json()["api_key_required"] is True


def post_in_one_go(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """POST with Python's http.client, which sends the whole body before it reads the answer."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_an_answer_given_before_the_body_is_read_reaches_a_client_still_sending(served: str) -> None:
    """Refused from its headers, a body far larger than the socket buffers still reaches the answer:
    the server reads and drops the rest before it closes, where closing at once reset the connection."""
    body = os.urandom(48 * 1024 * 1024)
    status, answer = post_in_one_go(served, body, {"Content-Type": "video/mp4", "X-API-Key": API_KEY})
    assert (status, answer["reason"]) == (413, "upload_too_large")
    status, answer = post_in_one_go(served, body, {"Content-Type": "video/mp4"})  # no key: 401, as early
    assert status == 401 and "detail" in answer


def test_bad_settings_are_refused_with_the_flag_named(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "serve", str(tmp_path / "model.onnx"),
                             "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "--workers" in result.stderr and "ACTIONREC_WORKERS" in result.stderr


def test_an_empty_api_key_is_refused_not_taken_as_none(untrained_model: Path) -> None:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ACTIONREC_")}
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "serve", str(untrained_model)],
                            capture_output=True, text=True, timeout=60, env=environment | {"ACTIONREC_API_KEY": ""})
    assert result.returncode == 1
    assert "set but empty" in " ".join(result.stderr.split())


def test_api_docs_work_offline(untrained_model: Path, tmp_path: Path) -> None:
    with serve_command([str(untrained_model), "--workers", "1"], tmp_path / "server.log") as url:
        page = httpx.get(url + "/docs").text
        assert "/static/docs/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            assert httpx.get(f"{url}/static/docs/{asset}").status_code == 200


def test_the_options_are_made_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ServerSettings field but the model, the key and the note is an option; a flag beats its
    variable, which beats the default; --examples names examples_dir; --help names each default and
    variable."""
    from typer.testing import CliRunner

    import actionrec.serve.app
    from actionrec.cli import app
    from actionrec.serve.settings import ServerSettings

    started: list[ServerSettings] = []
    monkeypatch.setattr(actionrec.serve.app, "serve", started.append)
    for name in [name for name in os.environ if name.startswith("ACTIONREC_")]:
        monkeypatch.delenv(name)
    command = next(command for command in app.registered_commands if command.name == "serve")
    options = set(inspect.signature(command.callback).parameters) - {"typer_context", "model"}
    assert options == set(ServerSettings.model_fields) - {"model_path", "api_key", "teach_note"}
    result = CliRunner().invoke(app, ["serve", "m.onnx", "--workers", "3", "--examples", "ex", "--no-batching"],
                                env={"ACTIONREC_WORKERS": "5", "ACTIONREC_MAX_PENDING": "4"})
    assert result.exit_code == 0, result.output
    settings = started[0]
    assert (settings.workers, settings.max_pending, settings.max_uploads) == (3, 4, 256)
    assert settings.examples_dir == Path("ex") and settings.batching is False and settings.model_path == Path("m.onnx")
    shown = " ".join(CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "[default: 2; env ACTIONREC_WORKERS]" in shown and "ONNX Runtime threads" in shown  # not taken for markup

