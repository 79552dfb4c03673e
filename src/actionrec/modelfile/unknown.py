""""None of these": whether a clip shows any of the actions a model knows. No torch.

A classifier always names its closest action, so footage of something else still gets a label. Each
answer is therefore also scored for how much the clip looks like the clips the model learned from,
and flagged `uncertain` under a threshold that export measures on the run's validation clips, so
that about `KNOWN_FLAGGED` of clips of known actions fall under it.

Scores:
- "feature_similarity": each frame's features (the encoder's output) compared by cosine with the
  mean features of each class's training clips; the best match of each frame, averaged over the
  clip. Measured on real UCF101 clips (README, "None of these") it separates unknown actions from
  known ones better than the top probability.
- "centered_similarity": for taught models (`actionrec.teaching.flow`), the clip's mean frame feature
  compared with class means after subtracting a `center` (the features' mean over many actions):
  with a few clips an action, this separates unknown actions better than raw similarity, whose
  all-positive features make every clip look alike.
- "similarity_and_confidence": what export measures now: the feature similarity above and the best
  action's probability, each as standard deviations from their mean over the known clips the
  threshold is measured on, added. Low confidence is evidence too: a 2 x 2 mosaic of four known
  actions looks like known footage, and no action gets much probability. On a four-action model of
  real UCF101 clips (docs/train.md) it flagged 93.1% of clips of two other actions where similarity
  alone flagged 69.4%, both at 6.2% of the known clips flagged.
- "max_probability": the best action's probability, for files without class means, or a threshold
  given by hand (`uncertain_below`), which is how models exported before calibration are served.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

FEATURE_SIMILARITY = "feature_similarity"
CENTERED_SIMILARITY = "centered_similarity"
SIMILARITY_AND_CONFIDENCE = "similarity_and_confidence"
MAX_PROBABILITY = "max_probability"
KNOWN_FLAGGED = 0.05  # share of known clips allowed under the threshold
DEFAULT_UNCERTAIN_BELOW = 0.5  # max-probability threshold for files without a measured one


def unit(vectors: np.ndarray) -> np.ndarray:
    """`vectors` scaled to length 1 along their last axis (zero vectors stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def class_means(features_by_class: Iterable[list[np.ndarray]]) -> np.ndarray:
    """(classes, F) unit vectors: for each class, the mean of its clips' mean frame feature (each
    clip's (T, F) features pooled and scaled to length 1 first, so every clip weighs the same)."""
    means = [unit(np.stack([unit(clip.astype(np.float32).mean(0)) for clip in clips]).mean(0)) for clips in
             features_by_class]
    return np.stack(means)


def feature_similarity(features: np.ndarray, means: np.ndarray) -> float:
    """How much a clip's (T, F) frame features look like the classes': each frame's best cosine
    with a class mean, averaged over the frames."""
    return float((unit(features) @ means.T).max(axis=1).mean())


def centered_similarity(features: np.ndarray, means: np.ndarray, center: np.ndarray) -> float:
    """How much a clip's (T, F) frame features look like the classes', around `center`: the
    cosine of its mean frame (scaled to length 1, less `center`) with the nearest class mean."""
    return float((unit(unit(np.asarray(features, np.float32).mean(0)) - center) @ means.T).max())


def threshold_for(scores: np.ndarray, known_flagged: float = KNOWN_FLAGGED) -> float:
    """The score under which `known_flagged` of these known clips' scores lie."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64), known_flagged))


@dataclass(frozen=True)
class UnknownCheck:
    """Whether a clip shows none of the model's actions: `unknown` when `value` (by the `score`:
    `feature_similarity`, `centered_similarity` or `max_probability`) is under `threshold`."""

    score: str
    value: float
    threshold: float
    unknown: bool


@dataclass
class UnknownRule:
    """When an answer counts as "none of these": its `score` under `threshold`."""

    score: str = MAX_PROBABILITY
    threshold: float = DEFAULT_UNCERTAIN_BELOW
    means: np.ndarray | None = None  # (classes, F) class means, for the similarity scores
    known_flagged: float | None = None  # measured share of known validation clips under the threshold
    calibrated_on: str | None = None
    center: np.ndarray | None = None  # (F,), for centered_similarity
    # similarity_and_confidence: the mean and standard deviation of each part over the known clips
    scales: dict[str, list[float]] | None = None

    def __post_init__(self) -> None:
        if self.score not in (FEATURE_SIMILARITY, CENTERED_SIMILARITY, SIMILARITY_AND_CONFIDENCE, MAX_PROBABILITY):
            raise ValueError(f"unknown score {self.score!r}")
        if self.needs_features and self.means is None:
            raise ValueError(f"{self.score} needs the class means")
        if self.score == CENTERED_SIMILARITY and self.center is None:
            raise ValueError("centered_similarity needs its center")
        if self.score == SIMILARITY_AND_CONFIDENCE:
            scales = self.scales or {}
            if sorted(scales) != ["confidence", "similarity"] or not all(
                    isinstance(pair, list) and len(pair) == 2 and all(_finite(v) for v in pair) and pair[1] > 0
                    for pair in scales.values()):
                raise ValueError("similarity_and_confidence needs the mean and a positive standard deviation of "
                                 f"its similarity and its confidence, not {self.scales!r}")

    @property
    def needs_features(self) -> bool:
        return self.score in (FEATURE_SIMILARITY, CENTERED_SIMILARITY, SIMILARITY_AND_CONFIDENCE)

    @property
    def has_training_means(self) -> bool:
        """Its means are the class means of a run's training clips (what `teach --keep-base` needs),
        not a taught model's few examples around a center."""
        return self.score in (FEATURE_SIMILARITY, SIMILARITY_AND_CONFIDENCE) and self.means is not None

    def value(self, probs: np.ndarray, features: np.ndarray | None) -> float:
        """The clip's score: `probs` its class probabilities, `features` its (T, F) frame features."""
        if self.score == MAX_PROBABILITY:
            return float(np.max(probs))
        if features is None or self.means is None:
            raise ValueError("this rule scores frame features against class means, and one was not given")
        if self.score == CENTERED_SIMILARITY:
            if self.center is None:
                raise ValueError("centered_similarity needs its center")
            return centered_similarity(features, self.means, self.center)
        similarity = feature_similarity(features, self.means)
        if self.score == SIMILARITY_AND_CONFIDENCE and self.scales is not None:
            (s_mean, s_std), (c_mean, c_std) = self.scales["similarity"], self.scales["confidence"]
            return (similarity - s_mean) / s_std + (float(np.max(probs)) - c_mean) / c_std
        return similarity

    def check(self, probs: np.ndarray, features: np.ndarray | None) -> UnknownCheck:
        """The rule applied to one clip."""
        value = self.value(probs, features)
        return UnknownCheck(score=self.score, value=round(value, 4), threshold=round(self.threshold, 4),
                            unknown=value < self.threshold)

    def describe(self) -> dict[str, Any]:
        """What a model's facts show of it (no class means)."""
        return {"score": self.score, "threshold": round(self.threshold, 4), "known_flagged": self.known_flagged,
                "calibrated_on": self.calibrated_on}

    def to_dict(self) -> dict[str, Any]:
        """For the model card: the class means as base64 float16 (about 2.5 KB a class)."""
        data = self.describe() | {"threshold": self.threshold}
        if self.scales is not None:
            data["scales"] = self.scales
        for key in ("means", "center"):
            if getattr(self, key) is not None:
                data[key] = _packed(getattr(self, key))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], num_classes: int, num_features: int | None = None) -> UnknownRule:
        """Raises ValueError on anything that does not fit a model of `num_classes` actions (and
        `num_features` features a frame, where known)."""
        means = center = None
        if data.get("means") is not None:
            means = _unpacked(data["means"])
            shape = means.shape
            if len(shape) != 2 or shape[0] != num_classes or (num_features and shape[1] != num_features):
                raise ValueError(f"class means shaped {shape} for {num_classes} labels"
                                 + (f" of {num_features} features" if num_features else ""))
        if data.get("center") is not None:
            center = _unpacked(data["center"])
            if means is None or center.shape != means.shape[1:]:
                raise ValueError(f"a center shaped {center.shape} for class means shaped "
                                 f"{None if means is None else means.shape}")
        threshold = data.get("threshold")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, not {threshold!r}")
        for name, array in (("class means", means), ("center", center)):
            if array is not None and not np.isfinite(array).all():
                raise ValueError(f"its {name} must be finite numbers, and some are not")
        scales = data.get("scales")
        if scales is not None and not isinstance(scales, dict):
            raise ValueError(f"scales must be a mapping, not {type(scales).__name__}")
        return cls(score=str(data.get("score")), threshold=float(threshold), means=means, center=center,
                   known_flagged=data.get("known_flagged"), calibrated_on=data.get("calibrated_on"), scales=scales)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _packed(array: np.ndarray) -> dict[str, Any]:
    return {"dtype": "float16", "shape": list(array.shape),
            "base64": base64.b64encode(np.asarray(array).astype("<f2").tobytes()).decode("ascii")}


def _unpacked(raw: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(raw["base64"]), "<f2").astype(np.float32).reshape(tuple(raw["shape"]))


def calibrate(means: np.ndarray, known: Iterable[tuple[np.ndarray, np.ndarray]], calibrated_on: str,
              known_flagged: float = KNOWN_FLAGGED) -> UnknownRule:
    """The rule whose threshold puts `known_flagged` of the `known` clips ((probs, (T, F) features)
    of validation clips of known actions) under it: similarity and confidence together, or where
    the clips come without probabilities, or all have one confidence, the similarity alone."""
    stored = np.asarray(means, np.float32).astype("<f2").astype(np.float32)  # as the card keeps them
    rule = UnknownRule(FEATURE_SIMILARITY, 0.0, stored)
    known = list(known)
    scores = np.array([rule.value(probs, features) for probs, features in known])
    if not len(scores):
        raise ValueError("no clips to measure the unknown threshold on")
    if all(probs is not None for probs, _ in known):
        confidence = np.array([float(np.max(probs)) for probs, _ in known])
        if confidence.std() > 1e-6 and scores.std() > 1e-6:
            rule = UnknownRule(SIMILARITY_AND_CONFIDENCE, 0.0, stored, scales={
                "similarity": [float(scores.mean()), float(scores.std())],
                "confidence": [float(confidence.mean()), float(confidence.std())]})
            scores = np.array([rule.value(probs, features) for probs, features in known])
    rule.threshold = threshold_for(scores, known_flagged)
    rule.known_flagged = round(float((scores < rule.threshold).mean()), 4)
    rule.calibrated_on = f"{len(scores)} {calibrated_on}"
    return rule


def unsure_warning(check: UnknownCheck, confidence: float, num_labels: int) -> str:
    """The words for an answer flagged unknown."""
    if check.score == FEATURE_SIMILARITY:
        why = (f"the video looks unlike the clips it learned from (similarity {check.value:.2f}, where "
               f"{1 - KNOWN_FLAGGED:.0%} of clips of its own actions score {check.threshold:.2f} or more)")
    elif check.score == SIMILARITY_AND_CONFIDENCE:
        why = (f"the video looks unlike the clips it learned from, or no action stands out (score {check.value:.2f}: "
               f"its similarity to them and its confidence together, where {1 - KNOWN_FLAGGED:.0%} of clips of its "
               f"own actions score {check.threshold:.2f} or more)")
    elif check.score == CENTERED_SIMILARITY:
        why = (f"the video looks unlike the example clips it was taught (similarity {check.value:.2f}, "
               f"under {check.threshold:.2f})")
    else:
        why = f"its best guess has {confidence:.0%} confidence, under {check.threshold:.0%}"
    return f"The model is unsure: {why}. The video may show none of the {num_labels} actions this model knows."
