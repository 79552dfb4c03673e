"""Dynamic batching: frames of concurrent requests encoded together, each request getting its own
answer, and a request that fails harming no other; and the device choice of a server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from actionrec.datasets.synth import generate_dataset
from actionrec.runtime.frame_batcher import FrameBatcher
from actionrec.testing.processes import serve_command


def slow_sum(frames: np.ndarray) -> np.ndarray:
    """Stands in for the encoder: one feature per frame (its sum); fails on a frame marked 255."""
    time.sleep(0.05)  # long enough for other requests to queue behind this one
    if (frames[:, 0, 0, 0] == 255).any():
        raise RuntimeError("the encoder failed on a marked frame")
    return frames.reshape(len(frames), -1).sum(axis=1, keepdims=True).astype(np.float32)


def frames_of(value: int, count: int) -> np.ndarray:
    frames = np.full((count, 4, 4, 3), value % 250, np.uint8)
    frames[:, 1:, :, :] = np.arange(count, dtype=np.uint8)[:, None, None, None]  # rows differ within a request
    return frames


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows():
    batcher = FrameBatcher(slow_sum, max_frames=64)
    requests = [frames_of(value, count) for value, count in zip(range(1, 13), [1, 2, 3, 4] * 3)]
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(batcher.encode, requests))
    for frames, features in zip(requests, results):
        np.testing.assert_array_equal(features, frames.reshape(len(frames), -1).sum(axis=1, keepdims=True))
    assert batcher.requests == 12 and batcher.batches < 12  # some ran together


def test_a_batch_never_exceeds_its_frame_limit():
    sizes: list[int] = []

    def record(frames: np.ndarray) -> np.ndarray:
        sizes.append(len(frames))
        return slow_sum(frames)

    batcher = FrameBatcher(record, max_frames=8)
    requests = [frames_of(i, 3) for i in range(10)] + [frames_of(20, 12)]  # one alone over the limit
    with ThreadPoolExecutor(11) as pool:
        results = list(pool.map(batcher.encode, requests))
    assert sorted(sizes)[-1] == 12 and max(sorted(sizes)[:-1]) <= 8  # a request overfilling a batch waits
    assert sum(sizes) == 42 and all(len(r) == len(q) for r, q in zip(results, requests))


def test_a_request_that_fails_harms_no_other_in_its_batch():
    batcher = FrameBatcher(slow_sum, window_s=0.02)
    bad = frames_of(3, 2)
    bad[0, 0, 0, 0] = 255
    requests = [frames_of(i, 2) for i in range(6)] + [bad] + [frames_of(i, 2) for i in range(6, 9)]
    outcomes: list = [None] * len(requests)

    def run(index: int) -> None:
        try:
            outcomes[index] = batcher.encode(requests[index])
        except RuntimeError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert isinstance(outcomes[6], RuntimeError)
    for index, outcome in enumerate(outcomes):
        if index != 6:
            np.testing.assert_array_equal(outcome, requests[index].reshape(2, -1).sum(1, keepdims=True))


# --------------------------------------------------------------------------- with a real model


@pytest.fixture(scope="module")
def model_and_clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    root = tmp_path_factory.mktemp("batching")
    model = make_untrained_model(root / "model.onnx", labels=["grow", "shrink", "brighten", "darken"],
                                 fitted_batch_norm=True)
    generate_dataset(root / "clips", clips_per_class=2, seed=8, width=64, height=48)
    return model, sorted((root / "clips").rglob("*.mp4"))


def test_batched_predictions_equal_unbatched_ones(model_and_clips):
    from actionrec.runtime.recognizer import Recognizer

    model, clips = model_and_clips
    alone = Recognizer(model)
    batched = Recognizer(model)
    batched.enable_batching(window_s=0.01)
    expected = [alone.predict(clip, top_k=4) for clip in clips]
    with ThreadPoolExecutor(len(clips)) as pool:
        got = list(pool.map(lambda clip: batched.predict(clip, top_k=4), clips))
    for a, b in zip(expected, got):
        assert a.action == b.action
        assert [t.action for t in a.top_k] == [t.action for t in b.top_k]
        np.testing.assert_allclose([t.confidence for t in a.top_k], [t.confidence for t in b.top_k], atol=2e-4)
    assert batched.batcher.batches < batched.batcher.requests

    # The features behind the answers: each clip's own, whatever it was batched with.
    from actionrec.video import read_clip

    frames = [read_clip(clip, alone.spec).frames for clip in clips]
    with ThreadPoolExecutor(len(frames)) as pool:
        features = list(pool.map(batched.encode, frames))
    for clip_frames, clip_features in zip(frames, features):
        np.testing.assert_allclose(clip_features, alone.encode(clip_frames), atol=1e-4)
    assert len({round(float(f.sum()), 3) for f in features}) > 1  # the clips differ, so must their features


@pytest.mark.server
@pytest.mark.slow
def test_a_served_batch_answers_each_upload_and_a_bad_one_harms_none(model_and_clips, tmp_path: Path):
    from actionrec.runtime.recognizer import Recognizer

    model, clips = model_and_clips
    expected = {clip.name: Recognizer(model).predict(clip) for clip in clips}
    bodies = [(clip.name, clip.read_bytes()) for clip in clips] + [("broken.mp4", clips[0].read_bytes()[:3000])]
    options = ["--workers", "2", "--max-pending", "32", "--batching", "--batch-window-ms", "20"]
    with serve_command([str(model), *options], tmp_path / "server.log") as url:
        assert httpx.get(url + "/v1/model").json()["batching"] is True

        def post(item: tuple[str, bytes]) -> tuple[str, httpx.Response]:
            return item[0], httpx.post(url + "/v1/predictions", content=item[1],
                                       headers={"Content-Type": "video/mp4"}, timeout=60)

        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = dict(pool.map(post, bodies))
    assert answers["broken.mp4"].status_code == 422
    for name, prediction in expected.items():
        response = answers[name]
        assert response.status_code == 200, response.text
        assert response.json()["action"] == prediction.action
        assert response.json()["confidence"] == pytest.approx(prediction.confidence, abs=2e-4)


def test_a_server_without_a_gpu_runtime_says_so_for_device_cuda(monkeypatch: pytest.MonkeyPatch):
    import onnxruntime

    from actionrec.errors import ModelFileError
    from actionrec.runtime.recognizer import choose_providers

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert choose_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(ModelFileError, match="no CUDA provider.*onnxruntime-gpu"):
        choose_providers("cuda")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_providers("auto")[0] == "CUDAExecutionProvider"
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
