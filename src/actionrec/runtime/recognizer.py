"""Inference with ONNX Runtime: a model file in, predictions and timelines out. Never imports torch.

    from actionrec import Recognizer
    recognizer = Recognizer("model.onnx")
    prediction = recognizer.predict("video.mp4", top_k=5, segments=True)
    print(prediction.action, prediction.confidence, prediction.segments)

A prediction runs in four stages, each with one home:

    decode    video bytes -> sampled frames       actionrec.video (stream_prediction_frames)
    encode    frames -> per-frame features        Encoder (actionrec.runtime.network), batched across requests
    classify  windows of features -> probs        Head (actionrec.runtime.network)
    answer    probs -> Prediction                 PredictionBuilder (actionrec.runtime.prediction), `rank`

A timeline samples frames over the whole video at the rate training clips were sampled, encodes
them in chunks as they are decoded, and classifies every window from the features it shares with
its neighbours, so memory stays bounded whatever the video's length.

The server decodes in worker processes and feeds the frames to `Recognizer.predict_stream`;
`predict` does both in one call. Many videos: `predict_many` (actionrec.runtime.many_videos) or Ray
(actionrec.runtime.on_ray).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from queue import Full, Queue
from typing import TypeVar

import numpy as np

from actionrec.errors import RegionsError, UndecodableVideoError
from actionrec.modelfile.card import ModelCard, read_card
from actionrec.modelfile.unknown import MAX_PROBABILITY, UnknownRule
from actionrec.runtime.answer import ScoredAction, UnknownCheck
from actionrec.runtime.detectors import Detector, load_detector
from actionrec.runtime.frame_batcher import FrameBatcher
from actionrec.runtime.many_videos import predict_paths
from actionrec.runtime.network import DEVICES, choose_providers, load_network
from actionrec.runtime.prediction import WINDOW_BATCH, Prediction, PredictionBuilder
from actionrec.runtime.regions import answer_region_stream, predict_regions
from actionrec.runtime.results import BatchResult
from actionrec.video import ClipSpec, DecodeLimits, Timeline, VideoSource, stream_prediction_frames
from actionrec.video.decode import FixedRegionCrops
from actionrec.video.regions import RegionSpec, parse_regions
from actionrec.video.stream import ClipReplanned, FrameChunk, FramePlan, FramesDone, PredictionMessage

__all__ = ["DEVICES", "WINDOW_BATCH", "BatchResult", "Prediction", "Recognizer", "choose_providers", "read_ahead",
           "read_card"]

T = TypeVar("T")

LEGACY_WINDOW_S = 3.0  # window length for models that do not record their training clips' duration


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
        card: ModelCard | None = None,
    ) -> None:
        """`uncertain_below`: flag answers whose top probability is under this, in place of the
        rule the file carries (see `actionrec.modelfile.unknown`; files without one flag under 0.5).
        `card`: the file's card where it was read already (`choose_model_file`'s), else read here."""
        self.network = load_network(model_path, threads=threads, device=device, card=card)  # a file, or a Hub name
        self.model_path = self.network.path
        self.encoder, self._head = self.network.encoder, self.network.head
        self.device = self.network.device
        self.batcher: FrameBatcher | None = None
        self.card: ModelCard = self.network.card
        self.labels: list[str] = self.card.labels
        self.spec: ClipSpec = self.card.spec
        self.limits = limits
        self.uncertain_below = uncertain_below
        rule = self.card.unknown_rule
        if uncertain_below is not None or rule is None:
            rule = UnknownRule(MAX_PROBABILITY, 0.5 if uncertain_below is None else uncertain_below)
        self.unknown_rule: UnknownRule = rule
        self.timeline = Timeline.for_clips(self.spec.num_frames, self.card.clip_duration_s or LEGACY_WINDOW_S)
        self._detectors: dict[str, Detector | None] = {}
        self._detectors_lock = threading.Lock()

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

    # -- the stages: encode, classify, answer --------------------------------------------------

    def encode(self, frames: np.ndarray, *, alongside_decoding: bool = False) -> np.ndarray:
        """(n, S, S, 3) frames -> what the head reads for each: (n, features). With batching on,
        together with the frames other threads are encoding. `alongside_decoding`: the video's next frames are being
        decoded meanwhile, more slowly than the encoder works, so the encoder keeps to its share
        of the cores (actionrec.runtime.cores)."""
        if self.batcher is not None:
            return self.batcher.encode(frames)
        return self.encoder(frames, alongside_decoding=alongside_decoding)

    def enable_batching(self, window_s: float = 0.0, max_frames: int = 64) -> None:
        """Encode frames of concurrent predictions together (see `actionrec.runtime.frame_batcher`): more
        answers a second under load, on a GPU above all."""
        self.batcher = FrameBatcher(self.encoder, window_s=window_s, max_frames=max_frames)

    def head(self, units: np.ndarray) -> np.ndarray:
        """(W, T, ...) encoded frames -> (W, classes) probabilities."""
        return self._head(units)

    def classify(self, frames: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """(N, T, S, S, 3) uint8 clips -> (N, classes) probabilities: both halves."""
        return self.network.classify(frames, batch_size)

    def rank(self, probs: np.ndarray, top_k: int, features: np.ndarray | None = None
             ) -> tuple[list[ScoredAction], UnknownCheck]:
        """One clip's probabilities -> its `top_k` actions, most likely first, and whether it shows
        none of them (see `actionrec.modelfile.unknown`) from its (T, F) frame `features` (what
        `encode` gave)."""
        order = np.argsort(-probs)[: max(1, min(top_k, len(self.labels)))]
        top = [ScoredAction(self.labels[i], round(float(probs[i]), 4)) for i in order]
        return top, self.unknown_rule.check(probs, features)

    def release_memory(self) -> None:
        """Give back the memory ONNX Runtime keeps between runs (about 180 MB after a 16 x 224
        clip): one small run of each half that shrinks its arena. The next run takes it again."""
        self.network.release_memory()

    # -- predictions --------------------------------------------------------------------------

    def predict(self, source: VideoSource, *, top_k: int = 5, segments: bool = False,
                regions: str | RegionSpec | None = None, explain: bool = False) -> Prediction:
        """Which action `source` (a path, bytes or a binary file) shows, and with `segments`, where in
        the video each action happens. With `regions` (a SPEC such as "grid:2x2", "people", or
        its `parse_regions`), also what each region shows: `prediction.regions` (see
        `actionrec.runtime.regions`). With `explain`, why: `Prediction.explanation`, the weight of
        each sampled moment and a map of where in the picture the evidence lies
        (`actionrec.runtime.explain`; for the whole video, so not with `regions`). Raises
        `VideoError` for bad videos, `RegionsError` for a SPEC that cannot be used (before reading
        the video)."""
        if regions is not None:
            spec = parse_regions(regions) if isinstance(regions, str) else regions
            if explain:
                raise RegionsError("an explanation is made for the whole video's answer, not for regions: ask for "
                                   "one or the other.")
            if segments:
                return self._region_timelines(source, spec, top_k)
            return predict_regions(self, source, spec, self.detector(spec), top_k=top_k, limits=self.limits)
        messages = stream_prediction_frames(source, self.spec, self.limits, self.timeline if segments else None)
        return self.predict_stream(read_ahead(messages), top_k=top_k, explain=explain)

    def _region_timelines(self, source: VideoSource, spec: RegionSpec, top_k: int) -> Prediction:
        """A timeline for the whole video and for each cell or zone (`answer_region_stream`)."""
        if not spec.fixed:
            raise RegionsError(f"regions {spec.text!r}: timelines per region are made for grids and zones; "
                               "people are answered without one (leave out segments).")
        started = time.perf_counter()
        messages = stream_prediction_frames(source, self.spec, self.limits, self.timeline,
                                            convert=FixedRegionCrops(spec, self.spec.image_size))
        prediction = answer_region_stream(self, read_ahead(messages), spec, top_k)
        prediction.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 1)
        return prediction

    def detector(self, spec: RegionSpec) -> Detector | None:
        """The detector `spec` needs (None for a grid or zones), loaded once and kept."""
        key = spec.source if spec.source != "detector" else f"detector:{spec.detector}"
        if spec.fixed:
            return None
        with self._detectors_lock:
            if key not in self._detectors:
                self._detectors[key] = load_detector(spec)
            return self._detectors[key]

    def predict_many(self, paths: Iterable[str | os.PathLike], *, workers: int | None = None, top_k: int = 5,
                     segments: bool = False, timeout_s: float | None = 300.0,
                     regions: str | RegionSpec | None = None, explain: bool = False) -> Iterator[BatchResult]:
        """Predict many videos, yielding a `BatchResult` for each as it is done (not in order).

        With `workers` > 1 (default: one per core), videos are read in that many worker processes,
        each with its own copy of the model: a video that crashes the decoder, or takes longer than
        `timeout_s`, costs that worker (replaced at once) and gives an error result; the others go
        on. With `workers` 0 or 1 everything runs here. `regions`: as for `predict` (its SPEC and
        detector are checked here, before any video is read).
        """
        spec = parse_regions(regions) if isinstance(regions, str) else regions
        if spec is not None:
            if explain:
                raise RegionsError("an explanation is made for the whole video's answer, not for regions: ask for "
                                   "one or the other.")
            self.detector(spec)
        return predict_paths(self, paths, workers=workers, top_k=top_k, segments=segments, timeout_s=timeout_s,
                             regions=spec, explain=explain)

    def predict_stream(self, messages: Iterable[PredictionMessage], *, top_k: int = 5,
                       explain: bool = False) -> Prediction:
        """A prediction from the messages of `stream_prediction_frames`, consumed as they come; with
        `explain`, why (see `predict`)."""
        started = time.perf_counter()
        builder, done = self.read_stream(messages, explain=explain)
        prediction = builder.finish(done, top_k)
        prediction.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 1)
        return prediction

    def read_stream(self, messages: Iterable[PredictionMessage], *, explain: bool = False
                    ) -> tuple[PredictionBuilder, FramesDone]:
        """Encode the streamed frames and classify their windows, up to the last message: what
        `finish` turns into a prediction (evaluation also reads the window probabilities)."""
        builder: PredictionBuilder | None = None
        for message in messages:
            if isinstance(message, FramePlan):
                builder = PredictionBuilder(self, message, explain=explain, maps=self.network.maps,
                                            features=self.card.num_features)
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
