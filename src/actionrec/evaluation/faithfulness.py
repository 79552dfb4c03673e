"""Whether explanations are what the model used (`actionrec evaluate MODEL.onnx DATA --explain`),
measured three ways with the model file alone (ONNX Runtime and NumPy, no torch):

    deletion   on each validation clip, the answer's probability after removing its 4 highest-weighted
               moments against after removing 4 random ones (the mean of RANDOM_DRAWS draws); removed
               moments' features are replaced by the mean of the kept ones' (as the weights are measured).
    pointing   2 x 2 mosaics (640 x 480) of four clips: one validation clip of an action the model knows,
               three of actions it was not taught (`--unknown`), its quadrant drawn at random: is the
               map's strongest quadrant (the most weight, cells split by area) the known clip's?
    splicing   an unknown clip, a known one, another unknown one, end to end: where the answer is the
               known action, does its highest-weighted moment lie inside the known clip, and how much of
               the positive weight does?

Mosaics and spliced videos are written to a folder and read back as `predict --explain` reads any
video, so what this measures is what users get.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

from actionrec.runtime.explain import distinct_moments, explain_clip, without_positions
from actionrec.runtime.recognizer import Recognizer
from actionrec.video.encode import write_video

REMOVED = 4  # moments removed by the deletion measure (of the model's 16)
RANDOM_DRAWS = 10
TILE = (240, 320)  # a mosaic's quadrant, (height, width): UCF101's own size; 2 x 2 is 640 x 480
FPS = 25


def clip_features(recognizer: Recognizer, frames: np.ndarray) -> np.ndarray:
    """(T, F): a decoded clip's frames as the answer reads them (pooled maps where the file has them)."""
    if recognizer.network.maps is not None:
        return recognizer.network.maps(frames).mean(axis=(1, 2), dtype=np.float32)
    return recognizer.encoder(frames)


def deletion(recognizer: Recognizer, clips: list[np.ndarray], *, seed: int = 0,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The deletion measure over decoded `clips` (each (T, S, S, 3)): see the module's docstring."""
    rng = np.random.default_rng(seed)
    top_drops, random_drops = [], []
    for done, frames in enumerate(clips, 1):
        features = clip_features(recognizer, frames)
        probs = recognizer.head(features[None])[0]
        answer = int(np.argmax(probs))
        positions = list(range(len(features)))
        explanation = explain_clip(recognizer.head, features, None, answer, "", positions, [0.0] * len(positions),
                                   (1, 1))
        moments = distinct_moments(positions)
        if len(moments) <= REMOVED:
            continue
        order = np.argsort([-m.weight for m in explanation.moments])[:REMOVED]
        windows = [without_positions(features, [p for m in order for p in moments[m]])]
        for _ in range(RANDOM_DRAWS):
            drawn = rng.choice(len(moments), REMOVED, replace=False)
            windows.append(without_positions(features, [p for m in drawn for p in moments[m]]))
        without = recognizer.head(np.stack(windows))[:, answer]
        top_drops.append(float(probs[answer] - without[0]))
        random_drops.append(float(np.mean(probs[answer] - without[1:])))
        if progress:
            progress(done, len(clips))
    top, rand = np.array(top_drops), np.array(random_drops)
    return {"clips": len(top), "removed": REMOVED, "random_draws": RANDOM_DRAWS,
            "top_beats_random": round(float(np.mean(top > rand)), 4) if len(top) else None,
            "mean_drop_top": round(float(top.mean()), 4) if len(top) else None,
            "mean_drop_random": round(float(rand.mean()), 4) if len(top) else None,
            "ratio": round(float(top.mean() / rand.mean()), 2) if len(top) and rand.mean() > 0 else None,
            "top_at_least_twice_random": bool(top.mean() >= 2 * rand.mean()) if len(top) else None}


def whole_frames(video: Path, size: tuple[int, int] = TILE) -> np.ndarray:
    """Every frame of `video`, RGB, resized to `size` (height, width)."""
    with av.open(str(video)) as container:
        return np.stack([frame.reformat(width=size[1], height=size[0], format="rgb24").to_ndarray()
                         for frame in container.decode(video=0)])


def quadrant_weights(weights: np.ndarray) -> np.ndarray:
    """(2, 2): a whole-frame map's weight in each quadrant, cells on the middle lines split by area."""
    def halves(count: int) -> np.ndarray:
        first = np.clip((0.5 - np.arange(count) / count) * count, 0, 1)
        return np.stack([first, 1 - first])  # (2, count)

    return halves(weights.shape[0]) @ weights @ halves(weights.shape[1]).T


def pointing(recognizer: Recognizer, known: list[tuple[Path, str]], unknown: list[Path], folder: Path, *,
             count: int = 24, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The pointing measure: `count` mosaics of one `known` clip (path, its action) and three `unknown`
    ones, written to `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    hits, answered_hits = [], []
    for number in range(count):
        path, action = known[int(rng.integers(len(known)))]
        others = [unknown[int(i)] for i in rng.choice(len(unknown), 3, replace=False)]
        place = int(rng.integers(4))
        parts = [whole_frames(video) for video in others]
        parts.insert(place, whole_frames(path))
        length = min(len(part) for part in parts)
        rows = [np.concatenate([parts[0][:length], parts[1][:length]], axis=2),
                np.concatenate([parts[2][:length], parts[3][:length]], axis=2)]
        video = folder / f"mosaic_{number:02d}.mp4"
        write_video(np.concatenate(rows, axis=1), video, fps=FPS)
        explanation = recognizer.predict(video, top_k=1, explain=True).explanation
        if explanation is None or explanation.map is None:
            raise ValueError(f"{recognizer.model_path}: this model file has no frame maps to point with; "
                             "export it again with this actionrec.")
        strongest = int(np.argmax(quadrant_weights(np.array(explanation.map.weights))))
        hits.append(strongest == place)
        if explanation.action == action:
            answered_hits.append(strongest == place)
        if progress:
            progress(number + 1, count)
    return {"mosaics": count, "strongest_quadrant_known": round(float(np.mean(hits)), 4),
            "answered_known": len(answered_hits),
            "strongest_quadrant_known_where_answered": round(float(np.mean(answered_hits)), 4) if answered_hits
            else None}


def splicing(recognizer: Recognizer, known: list[tuple[Path, str]], unknown: list[Path], folder: Path, *,
             count: int = 24, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The splicing measure: `count` videos of an `unknown` clip, a `known` one and another unknown
    one end to end, written to `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    peaks, shares = [], []
    for number in range(count):
        path, action = known[int(rng.integers(len(known)))]
        first, last = (unknown[int(i)] for i in rng.choice(len(unknown), 2, replace=False))
        parts = [whole_frames(first), whole_frames(path), whole_frames(last)]
        start, end = len(parts[0]) / FPS, (len(parts[0]) + len(parts[1])) / FPS
        video = folder / f"spliced_{number:02d}.mp4"
        write_video(np.concatenate(parts), video, fps=FPS)
        explanation = recognizer.predict(video, top_k=1, explain=True).explanation
        if explanation is not None and explanation.action == action:
            inside = np.array([start <= m.time_s < end for m in explanation.moments])
            weights = np.array([m.weight for m in explanation.moments])
            peaks.append(bool(inside[int(np.argmax(weights))]))
            positive = np.clip(weights, 0, None)
            shares.append(float(positive[inside].sum() / positive.sum()) if positive.sum() > 0 else 0.0)
        if progress:
            progress(number + 1, count)
    return {"videos": count, "answered_known": len(peaks),
            "peak_inside_known": round(float(np.mean(peaks)), 4) if peaks else None,
            "positive_weight_inside_known_mean": round(float(np.mean(shares)), 4) if shares else None,
            "share_at_least_60pct": round(float(np.mean(np.array(shares) >= 0.6)), 4) if shares else None}
