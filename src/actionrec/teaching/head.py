"""The head a taught model puts on its base's encoder, fitted with NumPy: the frames' mean feature
and their spread over time (standard deviation), both divided by the mean's length, and a linear
softmax classifier on both; how well it does with each clip left out; and the "none of these" rule
calibrated on the example clips (`actionrec.teaching.flow` uses them).

The spread is the movement: in one room the mean of the frames barely differs between actions,
how much the features move does. On the Weizmann clips (ten whole-body actions in one scene,
actors held out, docs/teach.md) it took this head from 80.0% to 85.7%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actionrec.modelfile.unknown import CENTERED_SIMILARITY, UnknownRule, unit

LOO_FLAGGED = 0.2  # quantile of the leave-one-out scores taken as the threshold
SUBSETS = 4  # pooled examples drawn from random halves of each view's frames
L2 = 1e-3  # weight decay of the linear head
STEPS = 300


def pool(features: np.ndarray) -> np.ndarray:
    """(..., T, F) frame features -> (..., 2F): their mean and their standard deviation over time,
    both divided by the mean's length (so the mean has length 1, and a still clip's spread stays
    near 0 rather than its noise being scaled up). What the head reads."""
    features = np.asarray(features, np.float32)
    mean = features.mean(axis=-2)
    length = np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
    return np.concatenate([mean, features.std(axis=-2)], axis=-1) / length


def appearance(features: np.ndarray) -> np.ndarray:
    """(..., T, F) -> (..., F): the mean frame feature scaled to length 1, what the "none of these"
    rule compares (a base's class means are of this kind)."""
    return unit(np.asarray(features, np.float32).mean(axis=-2))


def training_examples(clips: list[np.ndarray], rng: np.random.Generator, subsets: int = SUBSETS) -> np.ndarray:
    """Pooled examples of one action: each clip's frames, and random halves of them (in time order)."""
    rows = []
    for clip in clips:
        rows.append(pool(clip))
        for _ in range(subsets):
            half = np.sort(rng.choice(len(clip), size=max(1, len(clip) // 2), replace=False))
            rows.append(pool(clip[half]))
    return np.stack(rows)


@dataclass
class LinearHead:
    """softmax(pool(features) @ weights.T + bias) over `labels`."""

    weights: np.ndarray  # (classes, F)
    bias: np.ndarray  # (classes,)

    def probabilities(self, pooled: np.ndarray) -> np.ndarray:
        logits = pooled @ self.weights.T + self.bias
        logits -= logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)


def fit_head(x: np.ndarray, y: np.ndarray, num_classes: int, *, l2: float = L2, steps: int = STEPS,
             lr: float = 0.05) -> LinearHead:
    """A linear softmax classifier of unit-length rows `x` (N, F) with classes `y`, fitted by Adam
    on the whole set at once (cross-entropy plus `l2` weight decay; each class weighs the same)."""
    x = x.astype(np.float64)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weight = 1.0 / np.maximum(counts[y], 1) / max(1, int((counts > 0).sum()))
    onehot = np.eye(num_classes)[y]
    params = [np.zeros((num_classes, x.shape[1])), np.zeros(num_classes)]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for step in range(1, steps + 1):
        logits = x @ params[0].T + params[1]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        delta = (probs - onehot) * weight[:, None]
        grads = [delta.T @ x + l2 * params[0], delta.sum(axis=0)]
        for param, grad, moment in zip(params, grads, moments):
            moment[0] = 0.9 * moment[0] + 0.1 * grad
            moment[1] = 0.999 * moment[1] + 0.001 * grad * grad
            m_hat, v_hat = moment[0] / (1 - 0.9 ** step), moment[1] / (1 - 0.999 ** step)
            param -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return LinearHead(params[0].astype(np.float32), params[1].astype(np.float32))


def fit_on_clips(clips_by_class: list[list[np.ndarray]], *, seed: int = 0,
                 prototypes: np.ndarray | None = None) -> LinearHead:
    """The head for these actions' (T, F) clips; `prototypes` (K, F): one mean feature for each of K
    further classes numbered after them (a base's own actions, which `--keep-base` keeps from their
    class means alone: their spread is taken as the taught examples' typical one)."""
    rng = np.random.default_rng(seed)
    xs = [training_examples(clips, rng) for clips in clips_by_class]
    ys = [np.full(len(rows), label) for label, rows in enumerate(xs)]
    if prototypes is not None:
        width = prototypes.shape[-1]
        spread = np.concatenate(xs)[:, width:].mean(0)
        xs.append(np.concatenate([unit(prototypes), np.broadcast_to(spread, prototypes.shape)], axis=-1))
        ys.append(np.arange(len(clips_by_class), len(clips_by_class) + len(prototypes)))
    return fit_head(np.concatenate(xs), np.concatenate(ys), len(clips_by_class) + (0 if prototypes is None
                                                                                   else len(prototypes)))


def leave_one_out(clips_by_class: list[list[np.ndarray]], prototypes: np.ndarray | None = None,
                  max_clips: int = 60) -> float | None:
    """The share of clips (up to `max_clips`, spread over the actions) that a head fitted without
    each one names right; None when some action has a single clip."""
    if min(len(clips) for clips in clips_by_class) < 2:
        return None
    order = [(label, i) for label, clips in enumerate(clips_by_class) for i in range(len(clips))]
    right = []
    for label, i in order[:: max(1, -(-len(order) // max_clips))]:
        rest = [[clip for j, clip in enumerate(clips) if (c, j) != (label, i)]
                for c, clips in enumerate(clips_by_class)]
        head = fit_on_clips(rest, prototypes=prototypes)
        right.append(int(head.probabilities(pool(clips_by_class[label][i])[None])[0].argmax() == label))
    return round(float(np.mean(right)), 4)


def base_center(rule: UnknownRule | None) -> np.ndarray | None:
    """Where a base's card can tell it, the mean of many actions' features: the mean of its class
    means, or the center it was itself taught around. A center the few examples do not pull
    towards themselves."""
    if rule is None or rule.means is None:
        return None
    if rule.center is not None:
        return rule.center
    return rule.means.mean(0) if len(rule.means) > 1 else None


def unknown_rule(clips_by_class: list[list[np.ndarray]], center: np.ndarray | None, kept_means: np.ndarray | None,
                 num_examples: int) -> UnknownRule:
    """Centered similarity (see `actionrec.modelfile.unknown`) to the taught actions' means (and to a base's
    `kept_means`, with `--keep-base`), its threshold at the `LOO_FLAGGED` quantile of the example
    clips' scores, each clip scored against means made without it. `center`: `base_center`'s, or
    None for the examples' own mean.

    Leaving a clip out makes its action's mean one clip poorer than the served one, so these
    scores run low: the quantile is higher than a validation set's `KNOWN_FLAGGED` (README gives
    the rates measured on real clips)."""
    pooled = [np.stack([appearance(clip) for clip in clips]) for clips in clips_by_class]
    center = (np.concatenate(pooled).mean(0) if center is None else center).astype("<f2").astype(np.float32)
    centered = [unit(rows - center) for rows in pooled]
    means = np.stack([unit(rows.mean(0)) for rows in centered])
    if kept_means is not None:
        means = np.concatenate([means, unit(kept_means - center)])
    scores = []
    for label, rows in enumerate(centered):
        for i in range(len(rows)):
            rest = np.delete(rows, i, axis=0)
            loo = np.delete(means, label, axis=0) if not len(rest) else np.concatenate(
                [means[:label], unit(rest.mean(0))[None], means[label + 1:]])
            scores.append(float((rows[i] @ loo.T).max()))
    threshold = float(np.quantile(scores, LOO_FLAGGED))
    return UnknownRule(CENTERED_SIMILARITY, threshold, means.astype("<f2").astype(np.float32), center=center,
                       known_flagged=round(float((np.array(scores) < threshold).mean()), 4),
                       calibrated_on=f"{num_examples} example clips, each left out of its action's mean in turn")
