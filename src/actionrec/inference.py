"""Inference with ONNX Runtime: a model file in, predictions and timelines out. Never imports torch.

    from actionrec import Recognizer
    recognizer = Recognizer("model.onnx")
    prediction = recognizer.predict("video.mp4", top_k=5, segments=True)
    print(prediction.action, prediction.confidence, prediction.segments)

Frame features are the unit of work. An exported model runs in two halves: the encoder turns
each sampled frame into a feature vector once, and the temporal head reads windows of those
features. A timeline samples frames over the whole video at the rate training clips were
sampled, encodes them in chunks as they are decoded, and classifies every window from the
features it shares with its neighbours, so memory stays bounded whatever the video's length.
Models exported before the split (no `features` input) still load: their windows run the
whole network on frames.

The server decodes in worker processes (`actionrec.video.decode.stream_prediction_frames`) and
feeds the frames to `Recognizer.predict_stream` here; `predict` does both in one call.
"""

from __future__ import annotations

import os
import threading
from functools import partial
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from queue import Full, Queue
from typing import TypeVar

import numpy as np
import onnxruntime as ort

from actionrec.batching import FrameBatcher
from actionrec.card import FEATURES_INPUT, FEATURES_OUTPUT, INPUT_NAME, METADATA_KEY, OUTPUT_NAME, WINDOW_OUTPUT, ModelCard
from actionrec.errors import ModelFileError, UndecodableVideoError, VideoError
from actionrec.hub import resolve_model
from actionrec.processes import GuardedPool
from actionrec.timeline import SampleEvidence, Segment, merge_windows
from actionrec.unknown import MAX_PROBABILITY, UnknownRule
from actionrec.video import ClipSpec, DecodeLimits, Timeline, VideoSource, stream_prediction_frames
from actionrec.video.stream import ClipReplanned, FrameChunk, FramePlan, FramesDone, PredictionMessage

T = TypeVar("T")

LEGACY_WINDOW_S = 3.0  # window length for models that do not record their training clips' duration
WINDOW_BATCH = 32  # windows classified per call to the head


@dataclass
class Prediction:
    action: str
    confidence: float
    top_k: list[dict]  # [{"action": str, "confidence": float}], best first
    uncertain: bool  # likely none of the known actions: `unknown_check`'s value under its threshold
    video: dict  # duration_s, fps, width, height, rotation, num_frames, codec, container, frames_used
    timings_ms: dict  # decode, inference, total
    warnings: list[str] = field(default_factory=list)
    segments: list[Segment] | None = None
    unknown_check: dict | None = None  # {"score", "value", "threshold", "unknown"}: see actionrec.unknown

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BatchResult:
    """One video of a batch: its prediction, or why there is none (`reason`: a stable code). `path`
    is a str for a video in an object store (`s3://...`), which a Path would mangle."""

    path: Path | str
    prediction: Prediction | None = None
    error: str | None = None
    reason: str | None = None

    def row(self) -> dict:
        """What a results file keeps of it."""
        p = self.prediction
        return {"path": str(self.path), "action": p.action if p else None, "confidence": p.confidence if p else None,
                "top_k": p.top_k if p else None, "uncertain": p.uncertain if p else None, "error": self.error,
                "reason": self.reason}


class _PathPredictor:
    """What a batch worker process runs: its own recognizer, one video path at a time."""

    def __init__(self, model_path: Path, threads: int, limits: DecodeLimits, uncertain_below: float | None,
                 top_k: int, segments: bool) -> None:
        self.recognizer = Recognizer(model_path, threads=threads, limits=limits, uncertain_below=uncertain_below)
        self.top_k, self.segments = top_k, segments

    def __call__(self, path: Path) -> Prediction:
        return self.recognizer.predict(path, top_k=self.top_k, segments=self.segments)


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card an exported model carries (labels, frames, input size, ...)."""
    path = resolve_model(path)
    return _card_of(_load_session(path), path)


DEVICES = ("auto", "cpu", "cuda")


def choose_providers(device: str) -> list[str]:
    """ONNX Runtime's execution providers for `device`: "cuda" needs the CUDA provider (the
    `onnxruntime-gpu` package, see the `gpu` extra); "auto" takes it when present."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    available = ort.get_available_providers()
    if device == "cpu" or (device == "auto" and "CUDAExecutionProvider" not in available):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise ModelFileError("--device cuda: this ONNX Runtime has no CUDA provider (it has "
                             f"{', '.join(available)}). Install onnxruntime-gpu in place of onnxruntime "
                             "(see README, Serving on a GPU), or use --device cpu.")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _load_session(path: Path, options: ort.SessionOptions | None = None,
                  providers: list[str] | None = None) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file. Export one with `actionrec export RUN_DIR`.")
    options = options or ort.SessionOptions()
    options.log_severity_level = 3  # the features input's default value draws a warning that means nothing here
    # Threads that spin while waiting for work steal the cores that decoding needs: measured
    # here, a timeline of a 10-minute video took 22 s with spinning and 17.6 s without, while a
    # clip on an idle machine took 85 ms with and 89 ms without.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelFileError(f"{path}: ONNX Runtime cannot load this file ({exc}).") from None


def _card_of(session: ort.InferenceSession, path: Path) -> ModelCard:
    return ModelCard.from_json(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), str(path))


class Recognizer:
    """Loads an exported model once; then predicts actions for videos given as paths or bytes."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        threads: int | None = None,
        limits: DecodeLimits = DecodeLimits(),
        uncertain_below: float | None = None,
        device: str = "cpu",
    ) -> None:
        """`uncertain_below`: flag answers whose top probability is under this, in place of the
        rule the file carries (see `actionrec.unknown`; files without one flag under 0.5)."""
        self.model_path = resolve_model(model_path)  # a file, or a Hub name (hf://OWNER/NAME) it downloads
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = _load_session(self.model_path, options, choose_providers(device))
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.batcher: FrameBatcher | None = None
        self.card = _card_of(self.session, self.model_path)
        self.labels: list[str] = self.card.labels
        self.spec: ClipSpec = self.card.spec
        self.limits = limits
        self.uncertain_below = uncertain_below
        inputs = self.session.get_inputs() + self.session.get_overridable_initializers()
        self.split = FEATURES_INPUT in {i.name for i in inputs}  # exported after the split, or before
        rule = self.card.unknown_rule
        if uncertain_below is not None or rule is None or (rule.needs_features and not self.split):
            rule = UnknownRule(MAX_PROBABILITY, 0.5 if uncertain_below is None else uncertain_below)
        self.unknown_rule: UnknownRule = rule
        self.timeline = Timeline.for_clips(self.spec.num_frames, self.card.clip_duration_s or LEGACY_WINDOW_S)
        # ONNX Runtime runs the whole graph whichever output is asked for, so a run of the head also
        # encodes the frames fed beside it: one frame, as small as the file allows (files exported
        # with free height and width take 32 pixels, 1/49 of a 224-pixel frame's cost).
        frames_input = next(i for i in self.session.get_inputs() if i.name == INPUT_NAME)
        side = self.spec.image_size if isinstance(frames_input.shape[2], int) else min(32, self.spec.image_size)
        self._no_frames = np.zeros((1, 1, side, side, 3), np.uint8)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def describe(self) -> dict:
        """The model's public facts, as `GET /v1/model` shows them."""
        keys = ("name", "version", "labels", "num_frames", "image_size", "input", "normalization",
                "sampling", "model", "dataset", "validation", "exported_at", "clip_duration_s", "precision",
                "quantization")
        card = self.card.to_dict()
        return {key: card.get(key) for key in keys} | {
            "device": self.device, "batching": self.batcher is not None,
            "uncertain_below": self.unknown_rule.threshold if self.unknown_rule.score == MAX_PROBABILITY else None,
            "unknown": self.unknown_rule.describe(),
            "timeline": {"window_s": round(self.timeline.window_s, 3),
                         "stride_s": round(self.timeline.interval_s * self.timeline.stride, 3),
                         "sample_interval_s": round(self.timeline.interval_s, 4)},
        }

    # -- the network --------------------------------------------------------------------------

    def classify(self, frames: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """(N, T, S, S, 3) uint8 clips -> (N, classes) probabilities: the whole network."""
        outputs = [self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(frames[i : i + batch_size])})[0]
                   for i in range(0, len(frames), batch_size)]
        return np.concatenate(outputs)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) frames -> what the head reads for each: (n, features), or the frames
        themselves for a model exported before the split. With batching on, together with the
        frames other threads are encoding."""
        if not self.split:
            return frames
        if self.batcher is not None:
            return self.batcher.encode(frames)
        return self._encode_now(frames)

    def _encode_now(self, frames: np.ndarray) -> np.ndarray:
        return self.session.run([FEATURES_OUTPUT], {INPUT_NAME: np.ascontiguousarray(frames[None])})[0][0]

    def enable_batching(self, window_s: float = 0.0, max_frames: int = 64) -> None:
        """Encode frames of concurrent predictions together (see `actionrec.batching`): more
        answers a second under load, on a GPU above all. Models exported before the split run
        unbatched."""
        if self.split:
            self.batcher = FrameBatcher(self._encode_now, window_s=window_s, max_frames=max_frames)

    def rank(self, probs: np.ndarray, top_k: int, features: np.ndarray | None = None) -> tuple[list[dict], dict]:
        """One clip's probabilities -> its `top_k` actions, most likely first, and whether it shows
        none of them (`{"score", "value", "threshold", "unknown"}`, see `actionrec.unknown`) from
        its (T, F) frame `features` (what `encode` gave; None for models exported before the split)."""
        order = np.argsort(-probs)[: max(1, min(top_k, len(self.labels)))]
        top = [{"action": self.labels[i], "confidence": round(float(probs[i]), 4)} for i in order]
        return top, self.unknown_rule.check(probs, features if self.split else None)

    def head(self, units: np.ndarray) -> np.ndarray:
        """(W, T, ...) encoded frames -> (W, classes) probabilities."""
        if not self.split:
            return self.classify(units)
        feed = {INPUT_NAME: self._no_frames, FEATURES_INPUT: np.ascontiguousarray(units, dtype=np.float32)}
        return self.session.run([WINDOW_OUTPUT], feed)[0]

    def release_memory(self) -> None:
        """Give back the memory ONNX Runtime keeps between runs (about 180 MB after a 16 x 224
        clip): one small run that shrinks its arena. The next run takes it again, a little slower."""
        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        # Models exported before the split take whole clips only: their time axis is fixed.
        frames = self._no_frames if self.split else np.zeros((1, *self.spec_shape), np.uint8)
        self.session.run([OUTPUT_NAME], {INPUT_NAME: frames}, options)

    @property
    def spec_shape(self) -> tuple[int, int, int, int]:
        return (self.spec.num_frames, self.spec.image_size, self.spec.image_size, 3)

    # -- predictions --------------------------------------------------------------------------

    def predict(self, source: VideoSource, *, top_k: int = 5, segments: bool = False) -> Prediction:
        """Which action `source` (a path, bytes or a binary file) shows, and with `segments`, where in
        the video each action happens. Raises `VideoError` for bad videos."""
        messages = stream_prediction_frames(source, self.spec, self.limits, self.timeline if segments else None)
        return self.predict_stream(read_ahead(messages), top_k=top_k)

    def predict_many(self, paths: Iterable[str | os.PathLike], *, workers: int | None = None, top_k: int = 5,
                     segments: bool = False, timeout_s: float | None = 300.0) -> Iterator[BatchResult]:
        """Predict many videos, yielding a `BatchResult` for each as it is done (not in order).

        With `workers` > 1 (default: one per core), videos are read in that many worker processes,
        each with its own copy of the model: a video that crashes the decoder, or takes longer than
        `timeout_s`, costs that worker (replaced at once) and gives an error result; the others go
        on. With `workers` 0 or 1 everything runs here.
        """
        paths = [Path(path) for path in paths]
        workers = os.cpu_count() or 1 if workers is None else workers
        if workers <= 1 or len(paths) <= 1:
            for path in paths:
                try:
                    yield BatchResult(path, self.predict(path, top_k=top_k, segments=segments))
                except VideoError as exc:
                    yield BatchResult(path, error=str(exc), reason=exc.reason)
            return
        threads = max(1, (os.cpu_count() or 1) // workers)
        factory = partial(_PathPredictor, self.model_path, threads, self.limits, self.uncertain_below, top_k, segments)
        for path, outcome in GuardedPool(factory, workers, timeout_s).run(paths):
            if outcome.kind == "ok":
                yield BatchResult(path, outcome.value)
            else:
                message = outcome.message if outcome.kind == "video_error" else f"{path}: {outcome.message}"
                yield BatchResult(path, error=message, reason=outcome.reason)

    def predict_stream(self, messages: Iterable[PredictionMessage], *, top_k: int = 5) -> Prediction:
        """A prediction from the messages of `stream_prediction_frames`, consumed as they come."""
        started = time.perf_counter()
        builder, done = self.read_stream(messages)
        prediction = builder.finish(done, top_k)
        prediction.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 1)
        return prediction

    def read_stream(self, messages: Iterable[PredictionMessage]) -> tuple[_PredictionBuilder, FramesDone]:
        """Encode the streamed frames and classify their windows, up to the last message: what
        `finish` turns into a prediction (evaluation also reads the window probabilities)."""
        builder: _PredictionBuilder | None = None
        for message in messages:
            if isinstance(message, FramePlan):
                builder = _PredictionBuilder(self, message)
            elif builder is None:
                raise ValueError(f"expected a FramePlan first, got {type(message).__name__}")
            elif isinstance(message, FrameChunk):
                builder.add(message)
            elif isinstance(message, ClipReplanned):
                builder.replan(message.clip)
            elif isinstance(message, FramesDone):
                return builder, message
        raise UndecodableVideoError("the video's frames stopped before the end of the reading")


def read_ahead(messages: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`messages` produced on a thread, at most `depth` ahead: decoding goes on while the model
    works on what came before (PyAV and ONNX Runtime both let go of the GIL). When the consumer
    stops early, the thread stops too and closes `messages`."""
    queue: Queue = Queue(depth)
    stop = threading.Event()

    def hand_over(item: tuple) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for message in messages:
                if not hand_over(("message", message)):
                    return
            hand_over(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            hand_over(("error", exc))
        finally:
            close = getattr(messages, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name="actionrec-read-ahead", daemon=True).start()
    try:
        while True:
            kind, payload = queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise payload
            yield payload
    finally:
        stop.set()


class _PredictionBuilder:
    """Turns streamed frames into a prediction: encodes each frame once, classifies each timeline
    window as soon as its last sample is in, and keeps only what later windows still need."""

    def __init__(self, recognizer: Recognizer, plan: FramePlan) -> None:
        self.recognizer = recognizer
        self.plan = plan
        self.timeline = bool(plan.windows)
        self.clip = {int(i): None for i in plan.clip}  # frame index -> its frame (or features)
        self.samples: dict[int, np.ndarray] = {}  # sample position -> its encoded frame
        self.positions: dict[int, list[int]] = {}  # frame index -> sample positions it serves
        for position, index in enumerate(plan.samples):
            self.positions.setdefault(int(index), []).append(position)
        self.ready = 0  # samples 0..ready-1 are in
        self.next_window = 0
        # What each sample's windows and own frame say; models exported before the split, whose
        # frames cannot be read alone, get windows merged by their centres instead.
        self.evidence = SampleEvidence(len(plan.samples), len(recognizer.labels), recognizer.spec.num_frames) \
            if self.timeline and recognizer.split else None
        self.window_probs: list[np.ndarray] = []
        self.inference_s = 0.0

    def add(self, chunk: FrameChunk) -> None:
        started = time.perf_counter()
        units = self.recognizer.encode(chunk.frames)
        framed: list[int] = []  # rows of `units` that timeline samples show
        for row, (index, unit) in enumerate(zip(chunk.indices.tolist(), units)):
            if index in self.clip:
                self.clip[index] = unit
            for position in self.positions.get(index, ()):
                if position >= self.ready:
                    self.samples[position] = unit
            if index in self.positions:
                framed.append(row)
        if self.evidence is not None and framed:
            size = self.recognizer.spec.num_frames
            frame_probs = self.recognizer.head(np.repeat(units[framed][:, None], size, axis=1))
            for row, probs in zip(framed, frame_probs):
                self.evidence.add_frames(self.positions[int(chunk.indices[row])], probs[None])
        while self.ready in self.samples:
            self.ready += 1
        self._classify_windows(final=False)
        self.inference_s += time.perf_counter() - started

    def replan(self, clip: np.ndarray) -> None:
        self.clip = {int(i): None for i in clip}
        self.plan = replace(self.plan, clip=clip)

    def _classify_windows(self, final: bool) -> None:
        windows, size = self.plan.windows, self.recognizer.spec.num_frames
        ready = [w for w in range(self.next_window, len(windows)) if windows[w][0] + size <= self.ready]
        while ready and (final or len(ready) >= WINDOW_BATCH):
            batch, ready = ready[:WINDOW_BATCH], ready[WINDOW_BATCH:]
            units = np.stack([np.stack([self.samples[windows[w][0] + t] for t in range(size)]) for w in batch])
            probs = self.recognizer.head(units)
            if self.evidence is not None:
                self.evidence.add_windows([windows[w][0] for w in batch], probs)
            self.window_probs.append(probs)
            self.next_window = batch[-1] + 1
        keep_from = windows[self.next_window][0] if self.next_window < len(windows) else self.ready
        for position in [p for p in self.samples if p < keep_from]:
            del self.samples[position]

    def finish(self, done: FramesDone, top_k: int) -> Prediction:
        started = time.perf_counter()
        self._classify_windows(final=True)
        clip = [self.clip[int(i)] for i in self.plan.clip]
        if any(unit is None for unit in clip):
            raise UndecodableVideoError("the video's frames stopped before the end of the reading")
        stacked = np.stack(clip)
        probs = self.recognizer.head(stacked[None])[0]
        top, check = self.recognizer.rank(probs, top_k, stacked)
        labels = self.recognizer.labels
        segments = None
        if self.timeline and self.next_window:
            windows = self.plan.windows[: self.next_window]
            whole = self.next_window == len(self.plan.windows)  # else the stream broke before the last window
            end_s = done.info.duration_s if whole else windows[-1][2]
            if self.evidence is not None:
                covered = windows[-1][0] + self.recognizer.spec.num_frames
                segments = self.evidence.segments(self.recognizer.timeline.interval_s, end_s, labels, covered)
            else:
                segments = merge_windows([(start, end) for _, start, end in windows],
                                         np.concatenate(self.window_probs), labels, end_s)
        elif self.plan.timeline:  # shorter than one window (or broken before one): the clip is the timeline
            segments = [Segment(0.0, round(done.info.duration_s, 3), top[0]["action"], top[0]["confidence"])]
        self.inference_s += time.perf_counter() - started
        inference_ms = self.inference_s * 1000
        video = done.info.to_dict() | {"frames_used": [int(i) for i in self.plan.clip], "frame_times_s": done.clip_times}
        return Prediction(
            action=top[0]["action"],
            confidence=top[0]["confidence"],
            top_k=top,
            uncertain=check["unknown"],
            video=video,
            timings_ms={"decode": round(done.decode_ms, 1), "inference": round(inference_ms, 1)},
            warnings=list(done.warnings),
            segments=segments,
            unknown_check=check,
        )

