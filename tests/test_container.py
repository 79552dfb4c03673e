"""The container recipes, as far as a machine without Docker can check them: each Dockerfile's
entrypoint, environment and health check, run as plain processes against a real model, and a
SIGTERM that drains. Building and running the images themselves is not verified here."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from actionrec.testing.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.gpu"]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    final = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines[final:]]


def environment(steps: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, arguments in steps:
        if name == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def exec_form(arguments: str) -> list[str]:
    return json.loads(arguments)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("container") / "model.onnx")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_the_image_runs_as_a_user_behind_an_init_with_a_health_check(dockerfile: Path):
    steps = instructions(dockerfile)
    names = [name for name, _ in steps]
    users = [arguments for name, arguments in steps if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    entrypoint = exec_form(dict(steps)["ENTRYPOINT"])
    assert entrypoint[:2] == ["tini", "--"] and entrypoint[2:] == ["actionrec", "serve"]
    assert "HEALTHCHECK" in names and "/readyz" in dict(steps)["HEALTHCHECK"]
    env = environment(steps)
    assert env["ACTIONREC_MODEL"] == "/models/model.onnx" and env["ACTIONREC_HOST"] == "0.0.0.0"


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize("dockerfile", DOCKERFILES[:1], ids=lambda path: path.name)
def test_the_entrypoint_serves_passes_its_health_check_and_drains_on_sigterm(dockerfile: Path, model_path: Path,
                                                                              tmp_path: Path):
    steps = instructions(dockerfile)
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("ACTIONREC_")}
    # The image's environment, with the model where this test has it, on loopback and a free port.
    env |= environment(steps) | {"ACTIONREC_MODEL": str(model_path), "ACTIONREC_HOST": "127.0.0.1",
                                 "ACTIONREC_PORT": str(port)}
    command = exec_form(dict(steps)["ENTRYPOINT"])[2:]  # tini's part needs a container's PID 1
    command = [sys.executable, "-m", "actionrec.cli", *command[1:]]
    health = exec_form(dict(steps)["HEALTHCHECK"].split("CMD", 1)[1].strip())
    health = [sys.executable if health[0] == "python" else health[0], *health[1:]]
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(health, env=env, capture_output=True).returncode != 0:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/model").json()["labels"]
        server.send_signal(signal.SIGTERM)
        assert server.wait(float(env["ACTIONREC_DRAIN_TIMEOUT_S"]) + 10) == 0
    finally:
        if server.poll() is None:
            server.kill()
        log.close()
    assert subprocess.run(health, env=env, capture_output=True).returncode != 0  # unhealthy once stopped


def test_without_its_model_the_entrypoint_says_what_to_mount(tmp_path: Path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("ACTIONREC_")}
    env |= environment(instructions(DOCKERFILES[0])) | {"ACTIONREC_MODEL": str(tmp_path / "missing" / "model.onnx"),
                                                        "ACTIONREC_HOST": "127.0.0.1", "ACTIONREC_PORT": "0"}
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "serve"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no such model file" in result.stderr
