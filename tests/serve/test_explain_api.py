"""POST /v1/predictions?explain=true, in process: the same explanation as `Recognizer.predict(...,
explain=True)` gives, none unless asked for, and a model file without frame maps answered 200 with
moments only and the warning code `no_map`."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from actionrec.serve.app import create_app
from actionrec.serve.settings import ServerSettings
from actionrec.testing.media import LABELS, long_video

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model with frame maps (64 pixels: 2 x 2 cells) and the same one as an older export, without."""
    import onnx

    from actionrec.testing import make_untrained_model

    folder = tmp_path_factory.mktemp("explain-api")
    current = make_untrained_model(folder / "model.onnx", labels=LABELS, num_frames=6, image_size=64,
                                   fitted_batch_norm=True)
    graph = onnx.load(str(current))
    kept = [output for output in graph.graph.output if output.name != "frame_maps"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    old = folder / "old.onnx"
    onnx.save(graph, str(old))
    return {"current": current, "old": old}


def answer(model: Path, video: bytes, query: str) -> tuple[int, dict]:
    settings = ServerSettings(model_path=model, workers=1, allowed_hosts=["explain.test"])
    with TestClient(create_app(settings), base_url="http://explain.test") as client:
        response = client.post(f"/v1/predictions{query}", content=video, headers={"Content-Type": "video/mp4"})
        return response.status_code, response.json()


def test_explain_gives_the_moments_and_the_map(models: dict[str, Path]):
    from actionrec.runtime.recognizer import Recognizer

    video = long_video(2)
    status, body = answer(models["current"], video, "?explain=true&top_k=2")
    assert status == 200, body
    explanation = body["explanation"]
    expected = Recognizer(models["current"]).predict(video, explain=True).explanation
    assert expected is not None
    assert [m["time_s"] for m in explanation["moments"]] == [m.time_s for m in expected.moments]
    assert [m["weight"] for m in explanation["moments"]] == pytest.approx([m.weight for m in expected.moments],
                                                                          rel=1e-2, abs=1e-4)
    assert (explanation["map"]["rows"], explanation["map"]["cols"]) == (2, 3)
    assert explanation["warnings"] == [] and explanation["summary"]
    status, plain = answer(models["current"], video, "")
    assert status == 200 and plain["explanation"] is None


def test_a_file_without_maps_explains_moments_and_says_so(models: dict[str, Path]):
    status, body = answer(models["old"], long_video(2), "?explain=true")
    assert status == 200, body
    explanation = body["explanation"]
    assert explanation["map"] is None and explanation["warnings"] == ["no_map"]
    assert len(explanation["moments"]) == 6
