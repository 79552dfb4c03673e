"""Inference with ONNX Runtime: a model file in, predictions and timelines out. Never imports torch.

    from actionrec import Recognizer
    recognizer = Recognizer("model.onnx")
    prediction = recognizer.predict("video.mp4", top_k=5)
    print(prediction.action, prediction.confidence)

The server runs the two halves separately (`decode` in a worker process that may crash on a
hostile file, `classify` in the server process); `predict` is both in one call.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from actionrec.card import METADATA_KEY, ModelCard
from actionrec.errors import ModelFileError
from actionrec.video import Clip, ClipSpec, DecodeLimits, VideoSource, read_clip, read_windows

MAX_WINDOWS = 64  # decoded windows travel back from a worker process: bound their memory


@dataclass
class Segment:
    start_s: float
    end_s: float
    action: str
    confidence: float


@dataclass
class Prediction:
    action: str
    confidence: float
    top_k: list[dict]  # [{"action": str, "confidence": float}], best first
    uncertain: bool  # confidence under the recognizer's threshold: likely none of the known actions
    video: dict  # duration_s, fps, width, height, rotation, num_frames, codec, container, frames_used
    timings_ms: dict  # decode, inference, total
    warnings: list[str] = field(default_factory=list)
    segments: list[Segment] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Decoded:
    """What `Recognizer.decode` returns: picklable, so it can come back from a worker process."""

    clips: list[Clip]  # the whole video first; then, for segments, one clip per window
    decode_ms: float
    windows: bool = False


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card an exported model carries (labels, frames, input size, ...)."""
    path = Path(path)
    return _card_of(_load_session(path), path)


def _load_session(path: Path, options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file. Export one with `actionrec export RUN_DIR`.")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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
        uncertain_below: float = 0.5,
    ) -> None:
        self.model_path = Path(model_path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = _load_session(self.model_path, options)
        self.card = _card_of(self.session, self.model_path)
        self.labels: list[str] = self.card.labels
        self.spec: ClipSpec = self.card.spec
        self.limits = limits
        self.uncertain_below = uncertain_below
        self._input = self.session.get_inputs()[0].name

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def describe(self) -> dict:
        """The model's public facts, as `GET /v1/model` shows them."""
        keys = ("name", "version", "labels", "num_frames", "image_size", "input", "normalization",
                "sampling", "model", "dataset", "validation", "exported_at")
        card = self.card.to_dict()
        return {key: card.get(key) for key in keys} | {"uncertain_below": self.uncertain_below}

    # -- the two halves ---------------------------------------------------------------------

    def decode(self, source: VideoSource, *, segments: bool = False, window_s: float = 3.0,
               stride_s: float = 1.5) -> Decoded:
        return decode_video(source, self.spec, self.limits, segments=segments, window_s=window_s, stride_s=stride_s)

    def classify(self, frames: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """(N, T, S, S, 3) uint8 frames -> (N, classes) probabilities."""
        outputs = [
            self.session.run(None, {self._input: np.ascontiguousarray(frames[i : i + batch_size])})[0]
            for i in range(0, len(frames), batch_size)
        ]
        return np.concatenate(outputs)

    def predict_decoded(self, decoded: Decoded, *, top_k: int = 5) -> Prediction:
        started = time.perf_counter()
        probs = self.classify(np.stack([clip.frames for clip in decoded.clips]))
        inference_ms = (time.perf_counter() - started) * 1000
        whole = decoded.clips[0]
        order = np.argsort(-probs[0])[: max(1, min(top_k, len(self.labels)))]
        top = [{"action": self.labels[i], "confidence": round(float(probs[0][i]), 4)} for i in order]
        segments = None
        if decoded.windows:
            segments = merge_windows(decoded.clips[1:], probs[1:], self.labels)
        video = whole.info.to_dict() | {"frames_used": whole.frame_indices, "frame_times_s": whole.frame_times}
        return Prediction(
            action=top[0]["action"],
            confidence=top[0]["confidence"],
            top_k=top,
            uncertain=top[0]["confidence"] < self.uncertain_below,
            video=video,
            timings_ms={
                "decode": round(decoded.decode_ms, 1),
                "inference": round(inference_ms, 1),
                "total": round(decoded.decode_ms + inference_ms, 1),
            },
            warnings=whole.warnings,
            segments=segments,
        )

    def predict(self, source: VideoSource, *, top_k: int = 5, segments: bool = False,
                window_s: float = 3.0, stride_s: float = 1.5) -> Prediction:
        """Which action `source` (a path, bytes or a binary file) shows. Raises `VideoError` for bad videos."""
        decoded = self.decode(source, segments=segments, window_s=window_s, stride_s=stride_s)
        return self.predict_decoded(decoded, top_k=top_k)


def decode_video(source: VideoSource, spec: ClipSpec, limits: DecodeLimits, *, segments: bool = False,
                 window_s: float = 3.0, stride_s: float = 1.5) -> Decoded:
    """Decode what a prediction needs: the whole-video clip, plus one clip per window for segments.

    A module-level function so a process pool can run it without the model.
    """
    started = time.perf_counter()
    if segments:
        clips = read_windows(source, spec, window_s=window_s, stride_s=stride_s, limits=limits,
                             with_whole_video=True, max_windows=MAX_WINDOWS)
    else:
        clips = [read_clip(source, spec, limits=limits)]
    return Decoded(clips=clips, decode_ms=(time.perf_counter() - started) * 1000, windows=segments)


def merge_windows(windows: list[Clip], probs: np.ndarray, labels: list[str]) -> list[Segment]:
    """A timeline without overlaps: each window owns the time nearest its centre, and runs of
    windows with the same best action become one segment (confidence: their mean)."""
    centres = [(clip.start_s + clip.end_s) / 2 for clip in windows]
    segments: list[Segment] = []
    confidences: list[float] = []
    for i, (clip, p) in enumerate(zip(windows, probs)):
        start = clip.start_s if i == 0 else (centres[i - 1] + centres[i]) / 2
        end = clip.end_s if i == len(windows) - 1 else (centres[i] + centres[i + 1]) / 2
        best = int(np.argmax(p))
        if segments and segments[-1].action == labels[best]:
            confidences.append(float(p[best]))
            segments[-1].end_s = round(end, 3)
            segments[-1].confidence = round(float(np.mean(confidences)), 4)
        else:
            confidences = [float(p[best])]
            segments.append(Segment(round(start, 3), round(end, 3), labels[best], round(float(p[best]), 4)))
    return segments
