"""The Recognizer (ONNX Runtime): each sampled frame read and encoded once, windows classified from
shared features over the whole video, memory bounded, models exported before the split refused,
damaged model metadata named, a failing prediction leaving no thread behind, and `predict_many`."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from actionrec.errors import ModelFileError
from actionrec.testing.media import action_clip, encode, long_video, numbered_frames
from actionrec.video.stream import FrameChunk, FramePlan, stream_prediction_frames

LABELS = ["grow", "shrink", "brighten", "darken"]

torch = pytest.importorskip("torch", reason="making test models needs the train extra (torch)")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("engine") / "model.onnx", labels=LABELS, image_size=48,
                                clip_duration_s=2.0)


@pytest.fixture(scope="module")
def clip() -> bytes:
    return action_clip("grow", seed=1, num_frames=50)


def builder_after(recognizer, data: bytes):
    """The prediction builder once every frame of a timeline request has gone through it."""
    from actionrec.runtime.prediction import PredictionBuilder

    messages = stream_prediction_frames(data, recognizer.spec, recognizer.limits, recognizer.timeline)
    plan = next(messages)
    builder = PredictionBuilder(recognizer, plan)
    held = 0
    for message in messages:
        if isinstance(message, FrameChunk):
            builder.add(message)
            held = max(held, len(builder.samples))
    builder._classify_windows(final=True)
    return plan, builder, held


# --------------------------------------------------------------------------- the frame-feature engine


def test_every_frame_is_read_once_in_bounded_chunks(model_path: Path):
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(model_path)
    messages = list(stream_prediction_frames(long_video(30), recognizer.spec, recognizer.limits, recognizer.timeline))
    plan = messages[0]
    assert isinstance(plan, FramePlan)
    indices = np.concatenate([m.indices for m in messages if isinstance(m, FrameChunk)])
    assert sorted(indices.tolist()) == sorted(set(indices.tolist()))  # no frame twice
    assert set(indices.tolist()) == set(plan.clip.tolist()) | set(plan.samples.tolist())
    assert max(len(m.indices) for m in messages if isinstance(m, FrameChunk)) <= 16


@pytest.mark.parametrize("timeline", [True, False])
def test_a_timeline_encoder_keeps_to_its_share_of_the_cores_only_while_it_waits_on_the_decoder(
        model_path: Path, timeline: bool):
    """A chunk that comes late (the decoder is the slower stage) is encoded on the encoder's share of
    the cores (actionrec.runtime.cores): late is a quarter of the last encode's time to go there, a
    fiftieth to stay; chunks that wait for the encoder, and a clip's answer, take every core."""
    from actionrec.runtime.prediction import PredictionBuilder
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(model_path)
    alongside: list[bool] = []
    real_encode = recognizer.encode

    def recording_encode(frames, *, alongside_decoding=False):
        alongside.append(alongside_decoding)
        return real_encode(frames, alongside_decoding=alongside_decoding)

    recognizer.encode = recording_encode
    messages = list(stream_prediction_frames(long_video(30), recognizer.spec, recognizer.limits,
                                             recognizer.timeline if timeline else None, chunk_frames=1))
    builder = PredictionBuilder(recognizer, messages[0])
    chunk = next(message for message in messages if isinstance(message, FrameChunk))
    builder.add(chunk)
    assert alongside == [False]  # the first chunk: nothing to go by

    def came(after_s: float, narrow_before: bool) -> bool:
        builder.added_at, builder.encode_s, builder.encoded_alongside = 100.0, 0.1, narrow_before
        return builder._waiting_on_decoder(100.0 + after_s)

    assert came(0.03, False) == came(0.003, True) == timeline  # late: to the share, or staying there
    assert not came(0.02, False) and not came(0.001, True)  # on time: every core
    builder.added_at, builder.encoded_alongside = time.perf_counter() - 60, False
    builder.add(chunk)
    assert alongside[-1] == timeline  # what add() passes on


def test_the_timeline_covers_the_whole_video_whatever_its_length(model_path: Path):
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(model_path)
    data = long_video(150)  # 2.5 min: far more windows than the 64 the timeline once stopped at
    plan, builder, _ = builder_after(recognizer, data)
    timeline = recognizer.timeline
    assert timeline.window_s == pytest.approx(2.0)  # the training clips' duration, from the model file
    assert len(plan.windows) == len(timeline.windows(len(plan.samples))) > 100
    assert sum(len(p) for p in builder.window_probs) == len(plan.windows)  # every window classified
    assert plan.windows[-1][2] >= 150 - timeline.interval_s

    prediction = recognizer.predict(data, segments=True)
    segments = prediction.segments
    assert segments[0].start_s == 0 and segments[-1].end_s == pytest.approx(150, abs=0.05)
    for before, after in zip(segments, segments[1:]):
        assert before.end_s == pytest.approx(after.start_s) and before.action != after.action


def test_windows_from_shared_features_match_the_whole_network(model_path: Path):
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(model_path)
    data = long_video(12)
    plan, builder, _ = builder_after(recognizer, data)
    probs = np.concatenate(builder.window_probs)
    frames = {}
    for message in stream_prediction_frames(data, recognizer.spec, recognizer.limits, recognizer.timeline):
        if isinstance(message, FrameChunk):
            frames.update(zip(message.indices.tolist(), message.frames))
    size = recognizer.spec.num_frames
    clips = np.stack([np.stack([frames[int(plan.samples[first + t])] for t in range(size)])
                      for first, _, _ in plan.windows])
    np.testing.assert_allclose(probs, recognizer.classify(clips), atol=1e-4)


def test_windows_and_samples_own_frames_share_the_head_s_calls_and_score_as_each_alone(model_path: Path):
    from actionrec.runtime.prediction import WINDOW_BATCH
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(model_path)
    calls: list[int] = []
    head = recognizer.head
    recognizer.head = lambda units: calls.append(len(units)) or head(units)  # type: ignore[method-assign]
    data = long_video(40)
    plan, builder, _ = builder_after(recognizer, data)
    frames = np.unique(plan.samples)
    assert sum(calls) == len(plan.windows) + len(frames) > WINDOW_BATCH  # each window and frame once
    assert all(rows == WINDOW_BATCH for rows in calls[:-1])  # full calls, but the last
    assert builder.frames_waiting == [] and not builder.samples

    features = {}
    for message in stream_prediction_frames(data, recognizer.spec, recognizer.limits, recognizer.timeline):
        if isinstance(message, FrameChunk):
            features.update(zip(message.indices.tolist(), recognizer.encode(message.frames)))
    size = recognizer.spec.num_frames
    windows = np.stack([np.stack([features[int(plan.samples[first + t])] for t in range(size)])
                        for first, _, _ in plan.windows])
    np.testing.assert_allclose(np.concatenate(builder.window_probs), head(windows), atol=1e-5)
    alone = head(np.stack([np.repeat(features[int(i)][None], size, axis=0) for i in plan.samples]))
    assert builder.evidence is not None
    np.testing.assert_allclose(builder.evidence.frame_log, np.log(np.maximum(alone, 1e-6)), atol=1e-4)


def test_the_head_runs_alone_and_answers_as_the_whole_network(tmp_path: Path):
    from actionrec.runtime.recognizer import Recognizer
    from actionrec.testing import make_untrained_model

    recognizer = Recognizer(make_untrained_model(tmp_path / "model.onnx", num_frames=4, image_size=96))
    assert [i.name for i in recognizer.network.head.session.get_inputs()] == ["features"]  # no frame fed for nothing
    clips = np.random.default_rng(0).integers(0, 256, (3, 4, 96, 96, 3), dtype=np.uint8)
    features = np.stack([recognizer.encode(clip) for clip in clips])
    np.testing.assert_allclose(recognizer.head(features), recognizer.classify(clips), atol=1e-5)


def test_memory_does_not_grow_with_the_video(model_path: Path):
    from actionrec.runtime.recognizer import WINDOW_BATCH, Recognizer

    recognizer = Recognizer(model_path)
    size = recognizer.spec.num_frames
    peaks, held = [], []
    for seconds in (20, 160):
        data = long_video(seconds)
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        _, _, most_held = builder_after(recognizer, data)
        peaks.append(tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()
        held.append(most_held)
    # Eight times the video: what is held at once stays within one batch of windows and a chunk.
    assert max(held) <= size + WINDOW_BATCH * recognizer.timeline.stride + 16
    assert peaks[1] < 2 * peaks[0] + 4_000_000, peaks


def legacy_model(path: Path, image_size: int = 48) -> Path:
    """A model file as exported before the two halves: frames in, probabilities out, format 1."""
    import onnx

    from actionrec.modelfile.card import IMAGENET_MEAN, IMAGENET_STD
    from actionrec.training.export import to_onnx
    from actionrec.training.model import ActionModel, ModelConfig

    class Probabilities(torch.nn.Module):
        def __init__(self, model: ActionModel) -> None:
            super().__init__()
            self.model = model

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.model(frames), dim=-1)

    torch.manual_seed(0)
    config = ModelConfig(num_classes=4, hidden_size=32, width_mult=0.35)
    wrapped = Probabilities(ActionModel(config)).eval()
    example = torch.randint(0, 256, (2, 4, image_size, image_size, 3), dtype=torch.uint8)
    to_onnx(wrapped, example, path, "frames", "probabilities", {"frames": {0: "batch"}, "probabilities": {0: "batch"}})
    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key = "actionrec"
    entry.value = json.dumps({
        "format": 1, "name": "old", "version": "20260101.000000", "labels": LABELS, "num_frames": 4,
        "image_size": image_size,
        "input": {"name": "frames", "dtype": "uint8", "shape": ["batch", 4, image_size, image_size, 3],
                  "channels": "RGB"},
        "output": {"name": "probabilities", "meaning": "class probabilities (softmax), in the order of labels"},
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 255, "in_graph": True},
        "sampling": "segment centres", "model": config.to_dict() | {"backbone": "mobilenet_v2"},
        "dataset": "old run", "validation": {"epoch": 3, "val_acc": 0.5},
    })
    onnx.save(graph, str(path))
    return path


def test_models_exported_before_the_split_are_refused_saying_what_to_do(tmp_path: Path):
    from actionrec.modelfile.card import read_card
    from actionrec.runtime.recognizer import Recognizer

    old = legacy_model(tmp_path / "old.onnx")
    for load in (Recognizer, read_card):
        with pytest.raises(ModelFileError, match=r"old.onnx was exported by an older actionrec .*"
                                                 r"re-export it with `actionrec export RUN_DIR` or re-teach it"):
            load(old)


# --------------------------------------------------------------------------- model files and failures


def test_model_metadata_of_the_wrong_types_is_a_clear_error(untrained_model: Path, tmp_path: Path):
    import onnx

    from actionrec.runtime.recognizer import Recognizer

    for key, value, said in (("labels", 5, "'labels' must be a non-empty list"),
                             ("image_size", 0, "image_size must be between 16 and 1024"),
                             ("num_frames", "8", "'num_frames' must be a whole number")):
        graph = onnx.load(str(untrained_model))
        card = json.loads(graph.metadata_props[0].value)
        card[key] = value
        graph.metadata_props[0].value = json.dumps(card)
        path = tmp_path / f"bad-{key}.onnx"
        onnx.save(graph, str(path))
        with pytest.raises(ModelFileError, match=said) as raised:
            Recognizer(path)
        assert str(path) in str(raised.value) and "metadata is damaged" in str(raised.value)


def test_a_prediction_that_fails_leaves_no_reading_thread_behind(untrained_model: Path, clip: bytes, monkeypatch):
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(untrained_model)

    def broken(frames):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(recognizer, "head", broken)
    long = encode(numbered_frames(400), fps=25)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            recognizer.predict(long)
    deadline = time.monotonic() + 5
    while any(t.name == "actionrec-read-ahead" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "reading threads were left running"
        time.sleep(0.05)


# --------------------------------------------------------------------------- many videos


def test_predict_many_yields_each_result_once(untrained_model: Path, videos: Path):
    from actionrec.runtime.recognizer import Recognizer

    paths = sorted((videos / "clips").rglob("*.mp4"))
    results = list(Recognizer(untrained_model).predict_many(paths, workers=2))
    assert sorted(result.path for result in results) == paths
    assert sum(result.prediction is not None for result in results) == len(paths) - 1
