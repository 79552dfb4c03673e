"""What an attack on the teach routes found, third pass: limits passed by uploads sent at once,
look-alike action names stored apart, a model id its own routes refused, job errors naming another
action's clip, a DELETE during a job failing it, and job records showing the server's folders.
Each test failed before its fix. In process (the app under a test client), requests from threads."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from actionrec.testing.media import COLOURS, colour_clip
from actionrec.testing.processes import wait_for_job

pytest.importorskip("torch", reason="making the base model needs the train extra (torch)")
from fastapi.testclient import TestClient  # noqa: E402

from actionrec.serve.app import create_app  # noqa: E402
from actionrec.serve.settings import ServerSettings  # noqa: E402


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("base") / "base.onnx", fitted_batch_norm=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    root = tmp_path_factory.mktemp("clips")
    return {name: [colour_clip(root / f"{name}{i}.mp4", COLOURS[name], seed=i).read_bytes() for i in range(3)]
            for name in COLOURS}


def teaching_client(base_model: Path, data: Path, **limits) -> TestClient:
    settings = ServerSettings(model_path=base_model, workers=1, allowed_hosts=["testserver"], data_dir=data,
                              max_pending=16, **limits)
    return TestClient(create_app(settings))


def add(client: TestClient, action: str, body: bytes) -> httpx.Response:
    return client.post("/v1/teach/examples", params={"action": action}, content=body,
                       headers={"Content-Type": "video/mp4"})


def at_once(client: TestClient, uploads: list[tuple[str, bytes]]) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(uploads)) as pool:
        return list(pool.map(lambda upload: add(client, *upload), uploads))


def listed(client: TestClient) -> list[tuple[str, int]]:
    return [(a["action"], len(a["clips"])) for a in client.get("/v1/teach/examples").json()["actions"]]


def test_the_limits_hold_for_uploads_sent_at_once(base_model: Path, clips, tmp_path: Path):
    with teaching_client(base_model, tmp_path / "data", teach_max_actions=3, teach_max_clips=2) as client:
        answers = at_once(client, [(f"action{i}", clips["red"][i % 3]) for i in range(8)])
        assert sorted(a.status_code for a in answers) == [201] * 3 + [409] * 5, [a.text for a in answers]
        assert {a.json()["reason"] for a in answers if a.status_code == 409} == {"too_many_actions"}
        assert len(listed(client)) == 3
        first = listed(client)[0][0]
        answers = at_once(client, [(first, clips["blue"][i % 3]) for i in range(6)])
        assert sorted(a.status_code for a in answers) == [201] + [409] * 5, [a.text for a in answers]
        assert {a.json()["reason"] for a in answers if a.status_code == 409} == {"too_many_clips"}
        assert dict(listed(client))[first] == 2


def test_look_alike_names_are_one_action_under_the_name_written_first(base_model: Path, clips, tmp_path: Path):
    with teaching_client(base_model, tmp_path / "data") as client:
        assert add(client, "walk", clips["red"][0]).status_code == 201
        for look_alike in ("w\u0430lk", "\uff57\uff41\uff4c\uff4b", "WALK"):  # Cyrillic a; fullwidth
            answer = add(client, look_alike, clips["red"][1])
            assert answer.status_code == 201 and answer.json()["action"] == "walk", answer.text
        assert add(client, "stra\u00dfe", clips["blue"][0]).status_code == 201
        assert add(client, "STRASSE", clips["blue"][1]).json()["action"] == "stra\u00dfe"
        # two look-alikes sent at once to a name not yet held are one action too
        assert all(a.status_code == 201 for a in at_once(client, [("Jump", clips["green"][0]),
                                                                  ("\uff4a\uff55\uff4d\uff50", clips["green"][1])]))
        actions = dict(listed(client))
        assert len(actions) == 3 and actions["walk"] == 4 and actions["stra\u00dfe"] == 2, actions
        assert client.delete("/v1/teach/examples/\uff57\uff41\uff4c\uff4b").json()["removed"] == "walk"
        assert "walk" not in dict(listed(client))


def test_a_job_works_on_the_clips_it_started_with_and_shows_no_server_paths(base_model: Path, clips,
                                                                            tmp_path: Path):
    data = tmp_path / "data"
    with teaching_client(base_model, data) as client:
        for name in ("red", "blue", "green"):
            for body in clips[name][:2]:
                assert add(client, name, body).status_code == 201
        damaged = next((data / "examples" / "red").glob("*.mp4"))
        damaged.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))  # a clip damaged on the disk
        started = client.post("/v1/teach/jobs", json={"name": "_private"})
        assert started.status_code == 202, started.text
        assert client.delete("/v1/teach/examples/green").status_code == 200  # during the job
        job = wait_for_job(lambda route: client.get(route).json(), started.json()["id"])
        assert job["state"] == "done", job
        assert job["result"]["clips"] == {"blue": 2, "green": 2, "red": 1}
        assert list(job["result"]["skipped"]) == [f"red/{damaged.name}"]
        for shown in (job, client.get("/v1/teach/jobs").json()):
            assert str(data) not in json.dumps(shown) and str(data.resolve()) not in json.dumps(shown)
        # the model a job named `_private` made is listed, served and downloaded under one id
        model_id = job["model"]
        assert model_id[0].isalnum() and model_id.startswith("private-"), model_id
        assert model_id in [m["id"] for m in client.get("/v1/models").json()["models"]]
        assert client.get(f"/v1/models/{model_id}/file").status_code == 200
        assert client.post(f"/v1/models/{model_id}/serve").json()["served"] == model_id


def test_a_failed_job_names_the_clip_of_the_action_that_failed(base_model: Path, clips, tmp_path: Path):
    data = tmp_path / "data"
    with teaching_client(base_model, data) as client:
        for name in ("blue", "red"):
            for body in clips[name][:2]:
                assert add(client, name, body).status_code == 201
        blue = sorted((data / "examples" / "blue").glob("*.mp4"))
        red = sorted((data / "examples" / "red").glob("*.mp4"))
        blue[0].write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))  # blue keeps one clip that reads
        for path in red:
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
        job = wait_for_job(lambda route: client.get(route).json(), client.post("/v1/teach/jobs", json={}).json()["id"])
        assert job["state"] == "failed" and "'red'" in job["error"], job
        assert blue[0].name not in job["error"] and any(path.name in job["error"] for path in red), job["error"]
        assert str(data) not in json.dumps(job) and str(data.resolve()) not in json.dumps(job)


@pytest.mark.parametrize("name, prefix", [("_private", "private-"), ("\uff57\uff41\uff4c\uff4b", "walk-"),
                                          ("..x", "x-"), ("\u65e5\u672c", "taught-")])
def test_a_model_id_is_one_its_routes_take(name: str, prefix: str):
    from actionrec.teaching.names import model_id_for, valid_id

    model_id = model_id_for(name, "20250101-000000")
    assert valid_id(model_id) and model_id.startswith(prefix), model_id


def test_a_delete_takes_the_folder_of_exactly_its_name_where_an_older_server_kept_look_alikes(
        base_model: Path, clips, tmp_path: Path):
    import shutil

    data = tmp_path / "data"
    with teaching_client(base_model, data) as client:
        assert add(client, "walk", clips["red"][0]).status_code == 201
        examples = data / "examples"
        shutil.copytree(examples / "walk", examples / "wаlk")  # a Cyrillic а, as an older server stored it
        assert client.delete("/v1/teach/examples/wаlk").status_code == 200
        assert (examples / "walk").is_dir() and not (examples / "wаlk").exists()
        assert listed(client) == [("walk", 1)]


def test_a_job_whose_record_cannot_be_written_leaves_no_clips_set_aside(base_model: Path, clips, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    from actionrec.serve import teaching_data

    written = teaching_data.write_json

    def full_disk_for_jobs(path: Path, value) -> None:
        if path.parent.name == "jobs":
            raise OSError(28, "No space left on device")
        written(path, value)

    with teaching_client(base_model, tmp_path / "data") as client:
        for action in ("red", "blue"):
            assert add(client, action, clips[action][0]).status_code == 201
        monkeypatch.setattr(teaching_data, "write_json", full_disk_for_jobs)
        answer = client.post("/v1/teach/jobs", json={"name": "mine"})
        assert answer.status_code == 507, answer.text
        assert list((tmp_path / "data" / "jobs").iterdir()) == []
        monkeypatch.setattr(teaching_data, "write_json", written)
        assert client.post("/v1/teach/jobs", json={"name": "mine"}).status_code == 202  # and it can start again


def test_a_server_starting_again_removes_the_clips_set_aside_for_jobs_that_are_over(base_model: Path, clips,
                                                                                    tmp_path: Path):
    data = tmp_path / "data"
    for job_id, state in (("0123456789ab", "done"), ("ba9876543210", None)):  # ended; killed before its record
        (data / "jobs" / job_id / "red").mkdir(parents=True)
        (data / "jobs" / job_id / "red" / "clip.mp4").write_bytes(clips["red"][0])
        if state:
            (data / "jobs" / f"{job_id}.json").write_text(json.dumps({"id": job_id, "state": state}))
    with teaching_client(base_model, data) as client:
        assert client.get("/v1/teach/jobs").status_code == 200
        assert sorted(p.name for p in (data / "jobs").iterdir()) == ["0123456789ab.json"]


def test_a_model_an_older_server_kept_under_a_name_that_is_no_id_is_named_in_the_log(base_model: Path,
                                                                                      tmp_path: Path, caplog):
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    (models / "_private-20261206-101010.onnx").write_bytes(base_model.read_bytes())
    with caplog.at_level("WARNING", logger="actionrec"), teaching_client(base_model, tmp_path / "data") as client:
        assert [m["id"] for m in client.get("/v1/models").json()["models"]] == ["base"]
    said = [r.getMessage() for r in caplog.records if "_private-20261206-101010.onnx" in r.getMessage()]
    assert said and "Rename it, e.g. to private-20261206-101010.onnx" in said[0], caplog.text
