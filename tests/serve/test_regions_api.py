"""`POST /v1/predictions?regions=...` in-process (TestClient, real decode workers): each region's
answer, and regions the server refuses, before the body where it can, with `bad_regions`."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from actionrec.serve.app import create_app
from actionrec.serve.settings import ServerSettings
from actionrec.testing.media import LABELS
from actionrec.testing.regions import colour_mosaic


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory) -> bytes:
    return colour_mosaic(tmp_path_factory.mktemp("regions") / "mosaic.mp4",
                         [["red", "blue"], ["green", "yellow"]]).read_bytes()


@pytest.fixture(scope="module")
def client(model_path: Path):
    settings = ServerSettings(model_path=model_path, workers=1, max_regions=4, allowed_hosts=["testserver"])
    with TestClient(create_app(settings)) as client:
        yield client


def post(client: TestClient, body: bytes, **params):
    return client.post("/v1/predictions", content=body, params=params, headers={"Content-Type": "video/mp4"})


def test_each_region_is_answered(client: TestClient, mosaic: bytes):
    response = post(client, mosaic, regions="grid:2x2", top_k=2)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [(r["id"], r["box"]) for r in answer["regions"]] == [
        ("r1c1", [0, 0, 64, 48]), ("r1c2", [64, 0, 64, 48]), ("r2c1", [0, 48, 64, 48]), ("r2c2", [64, 48, 64, 48])]
    assert all(r["action"] in LABELS and len(r["top_k"]) == 2 and r["boxes"] is None for r in answer["regions"])
    assert answer["action"] in LABELS and answer["video"]["width"] == 128
    timelines = post(client, mosaic, regions="grid:2x1", segments="true").json()  # a timeline per cell
    assert [r["id"] for r in timelines["regions"]] == ["r1c1", "r1c2"]
    assert all(r["segments"] and r["segments"][0]["action"] in LABELS for r in timelines["regions"])
    plain = post(client, mosaic).json()
    assert "regions" not in plain or plain["regions"] is None


def test_people_found_nowhere_says_so(client: TestClient, mosaic: bytes):
    pytest.importorskip("cv2", reason="the built-in people detector needs the people extra (OpenCV)")
    answer = post(client, mosaic, regions="people").json()
    assert answer["regions"] == [] and any("no person was found" in w for w in answer["warnings"])


@pytest.mark.parametrize(("params", "says"), [
    ({"regions": "grid:3x3"}, "at most 4 (--max-regions)"),
    ({"regions": "detector:/etc/model.onnx"}, "does not take detector files"),
    ({"regions": "people", "segments": "true"}, "people are answered without one"),
    ({"regions": "1,2"}, "is not x,y,w,h"),
    ({"regions": "100,0,64,48"}, "reaches outside the 128x96 frame"),  # known once the video is read
])
def test_regions_it_cannot_answer_are_refused(client: TestClient, mosaic: bytes, params: dict, says: str):
    response = post(client, mosaic, **params)
    assert response.status_code == 422, response.text
    assert response.json()["reason"] == "bad_regions" and says in response.json()["detail"]
    assert post(client, mosaic).status_code == 200  # and the server goes on
