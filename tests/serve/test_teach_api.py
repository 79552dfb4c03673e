"""Teaching over HTTP on a real `actionrec serve`: clips in, a job followed to its end, the served
model switched without a restart, a model file downloaded; limits and bad input answered with a
reason; and nothing acknowledged lost when the server is stopped, or killed in the middle of a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from actionrec.testing.media import COLOURS, colour_clip
from actionrec.testing.processes import free_port, serve_command, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="making the base model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("base") / "base.onnx", fitted_batch_norm=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, list[bytes]]:
    root = tmp_path_factory.mktemp("clips")
    return {name: [colour_clip(root / f"{name}{i}.mp4", COLOURS[name], seed=i).read_bytes() for i in range(4)]
            for name in COLOURS}


def add(url: str, action: str, body: bytes, **headers) -> httpx.Response:
    return httpx.post(f"{url}/v1/teach/examples", params={"action": action}, content=body,
                      headers={"Content-Type": "video/mp4", **headers}, timeout=60)


def test_teach_switch_and_download(base_model: Path, clips, tmp_path: Path):
    data = tmp_path / "data"
    env = {"ACTIONREC_TEACH_MAX_CLIPS": "3"}
    with serve_command([str(base_model), "--data-dir", str(data)], tmp_path / "server.log", env) as url:
        for name in ("red", "blue"):
            for body in clips[name][:3]:
                answer = add(url, name, body)
                assert answer.status_code == 201, answer.text
        # limits and bad input: a reason each, nothing stored
        assert add(url, "red", clips["red"][3]).json()["reason"] == "too_many_clips"
        assert add(url, "", clips["red"][3]).json()["reason"] == "invalid_action_name"
        assert add(url, "<script>", clips["red"][3]).json()["reason"] == "invalid_action_name"
        assert add(url, "green", b"").status_code == 400
        broken = add(url, "green", b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
        assert broken.status_code == 422 and broken.json()["reason"], broken.text
        listed = httpx.get(f"{url}/v1/teach/examples").json()
        assert [(a["action"], len(a["clips"])) for a in listed["actions"]] == [("blue", 3), ("red", 3)]
        # remove one clip, then teach
        clip_id = listed["actions"][0]["clips"][0]["id"]
        assert httpx.delete(f"{url}/v1/teach/examples/blue/{clip_id}").status_code == 200
        started = httpx.post(f"{url}/v1/teach/jobs", json={"name": "colours"})
        assert started.status_code == 202, started.text
        busy = httpx.post(f"{url}/v1/teach/jobs", json={})
        assert busy.status_code == 409 and busy.json()["reason"] == "teaching_busy"
        job = wait_for_job(lambda route: httpx.get(url + route).json(), started.json()["id"])
        assert job["state"] == "done", job
        assert job["result"]["clips"] == {"blue": 2, "red": 3}
        models = httpx.get(f"{url}/v1/models").json()
        assert models["served"] == "base" and [m["id"] for m in models["models"]] == ["base", job["model"]]
        switched = httpx.post(f"{url}/v1/models/{job['model']}/serve")
        assert switched.status_code == 200 and switched.json()["model"]["labels"] == ["blue", "red"]
        answer = httpx.post(f"{url}/", content=clips["red"][3], headers={"Content-Type": "video/mp4"}, timeout=60)
        assert answer.json()["action"] == "red"
        download = httpx.get(f"{url}/v1/models/{job['model']}/file")
        assert download.status_code == 200
        (tmp_path / "got.onnx").write_bytes(download.content)
        assert httpx.get(f"{url}/v1/models/nope/file").json()["reason"] == "not_found"
    from actionrec.runtime.recognizer import Recognizer

    assert Recognizer(tmp_path / "got.onnx").labels == ["blue", "red"]
    # a restart keeps the clips, the model, and which model was served
    with serve_command([str(base_model), "--data-dir", str(data)], tmp_path / "server2.log") as url:
        assert httpx.get(f"{url}/v1/model").json()["labels"] == ["blue", "red"]
        listed = httpx.get(f"{url}/v1/teach/examples").json()
        assert [(a["action"], len(a["clips"])) for a in listed["actions"]] == [("blue", 2), ("red", 3)]
        assert httpx.post(f"{url}/v1/models/base/serve").json()["model"]["labels"] == Recognizer(base_model).labels


def test_a_server_killed_mid_teach_finishes_the_job_when_back(base_model: Path, clips, tmp_path: Path):
    data = tmp_path / "data"
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONREC_")}
    command = [sys.executable, "-m", "actionrec.cli", "serve", str(base_model), "--data-dir", str(data),
               "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                   start_new_session=True)
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        for name in ("red", "blue"):
            for body in clips[name][:2]:
                assert add(url, name, body).status_code == 201
        job_id = httpx.post(f"{url}/v1/teach/jobs", json={"name": "cut short"}).json()["id"]
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the server and its teaching process, at once
        process.wait()
    with serve_command([str(base_model), "--data-dir", str(data)], tmp_path / "server2.log") as url:
        job = wait_for_job(lambda route: httpx.get(url + route).json(), job_id)
        assert job["state"] == "done" and job.get("restarted"), job
        assert job["result"]["clips"] == {"blue": 2, "red": 2}


def test_teaching_needs_its_folder_and_the_key(base_model: Path, clips, tmp_path: Path):
    with serve_command([str(base_model)], tmp_path / "server.log") as url:
        answer = add(url, "red", clips["red"][0])
        assert answer.status_code == 409 and answer.json()["reason"] == "teaching_off"
        assert httpx.get(f"{url}/v1/models").json()["models"][0]["id"] == "base"
    env = {"ACTIONREC_API_KEY": "s3cret"}
    with serve_command([str(base_model), "--data-dir", str(tmp_path / "d")], tmp_path / "server2.log", env) as url:
        assert add(url, "red", clips["red"][0]).status_code == 401
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert add(url, "red", clips["red"][0], **{"X-API-Key": "s3cret"}).status_code == 201


def test_a_server_can_teach_on_another_base(base_model: Path, clips, tmp_path: Path):
    """The demo's arrangement: one model served, teaching on another's encoder (an ImageNet base)."""
    from actionrec.testing import make_untrained_model

    served = make_untrained_model(tmp_path / "served.onnx", labels=("a", "b", "c"), num_frames=2, image_size=32)
    options = [str(served), "--data-dir", str(tmp_path / "d"), "--teach-base", str(base_model)]
    with serve_command(options, tmp_path / "server.log", {"ACTIONREC_TEACH_NOTE": "a note"}) as url:
        about = httpx.get(f"{url}/v1/teach").json()
        assert about["enabled"] and about["base"]["name"] == "untrained-test-model" and about["note"] == "a note"
        assert about["base"]["can_keep_actions"] is False  # no class means of training clips to keep them by
        for name in ("red", "blue"):
            for body in clips[name][:2]:
                assert add(url, name, body).status_code == 201
        job_id = httpx.post(f"{url}/v1/teach/jobs", json={}).json()["id"]
        job = wait_for_job(lambda route: httpx.get(url + route).json(), job_id)
        assert job["state"] == "done", job
        assert [m["id"] for m in httpx.get(f"{url}/v1/models").json()["models"]] == ["base", "teach-base", job["model"]]
        assert httpx.post(f"{url}/v1/models/{job['model']}/serve").json()["model"]["num_frames"] == 4
        answer = httpx.post(f"{url}/", content=clips["blue"][3], headers={"Content-Type": "video/mp4"}, timeout=60)
        assert answer.json()["action"] == "blue"
        assert httpx.post(f"{url}/v1/models/base/serve").json()["model"]["labels"] == ["a", "b", "c"]
