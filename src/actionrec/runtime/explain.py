"""Why this answer: which sampled moments and which part of the picture decided it, measured by
occlusion on the model's own halves, with ONNX Runtime and NumPy alone (no gradients, no torch).

    moments  each distinct sampled frame's features are replaced by the mean of the other moments'
             (what the rest of the clip shows) and the head is run again: the drop in the answer's
             log-odds is the moment's weight (negative: without it the answer is surer). Chosen over
             the mean of its two neighbours, which under-weighs moments inside a stretch of one
             action (spliced videos: 73% of the positive weight inside the known clip against 95%).
    map      one block of cells of every frame's last feature map (before pooling) is blanked (set to
             zero, what a ReLU6 map reads as "nothing here"), every frame re-pooled and the head run
             again: the drop in the answer's log-odds, shared by the block's cells, is their weight
             (blocks of 3 x 3 cells on a 224-pixel model's 7 x 7 map, starting at cells 0, 2 and 4;
             single cells on maps of 3 x 3 or fewer). It is then laid over the whole
             frame as the video shows it: cells outside the centre square the model sees weigh 0.

Every occluded window (one per moment, one per block) and the untouched clip go through the head in
one call, so an explanation costs one head run on a few dozen windows beside the plain answer (see
docs/explain.md for its cost and how faithful it measured). Model files without frame maps (exported
before actionrec 0.4, or taught on such a file) explain the moments alone, with the warning code `no_map`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from actionrec.runtime.answer import ExplainedMoment, Explanation, ExplanationMap

EPSILON = 1e-6  # probabilities are clipped to [EPSILON, 1 - EPSILON] before their log-odds are taken
# The map's cells are blanked in blocks, at most this many a side (9 head windows): a 7 x 7 map in
# blocks of 3 x 3 cells. One window a cell (49) cost 1.76x the plain answer of a 16 x 224 clip on 2
# cores and blocks of 2 x 2 (16 windows) 1.54x, over the 1.5x asked; on 40 real mosaics, blocks of
# 3 x 3 pointed to the known quadrant as often as single cells (17 of the 19 answered right).
MAX_BLOCKS_A_SIDE = 3

# Warning codes an explanation may carry, and what each means.
WARNINGS = {
    "no_map": "this model file has no frame maps (exported before actionrec 0.4, or taught on such a file): "
              "moments only; export it again for a map",
    "few_moments": "the clip has fewer distinct frames than the model samples: one moment per distinct frame",
    "one_moment": "the clip has a single distinct frame: there are no moments to compare",
}


def log_odds(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(probabilities.astype(np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def distinct_moments(frames: Sequence[int]) -> list[list[int]]:
    """The positions of each distinct frame in a clip's sampled `frames` (indices in the stream), in
    time order: a clip too short for its samples repeats frames, and a repeat is not another moment."""
    groups: dict[int, list[int]] = {}
    for position, frame in enumerate(frames):
        groups.setdefault(int(frame), []).append(position)
    return sorted(groups.values(), key=lambda positions: positions[0])


def without_positions(features: np.ndarray, removed: Sequence[int]) -> np.ndarray:
    """The clip's (T, F) `features` with the positions `removed` replaced by the mean of the others'
    features (what the rest of the clip shows; zeros where nothing is left)."""
    out = features.copy()
    kept = np.setdiff1d(np.arange(len(features)), np.asarray(removed, dtype=int))
    out[list(removed)] = features[kept].mean(axis=0) if len(kept) else 0
    return out


def moment_windows(features: np.ndarray, moments: list[list[int]]) -> np.ndarray:
    """(M, T, F): the clip's (T, F) features once per moment, that moment's positions (a repeated frame's
    all) replaced by the mean of the other positions' features."""
    return np.stack([without_positions(features, positions) for positions in moments])


def blocks(cells: int) -> list[tuple[int, int]]:
    """(start, end) of the blocks a map's `cells` rows (or columns) are blanked in: at most
    MAX_BLOCKS_A_SIDE of equal size, spread evenly from edge to edge (neighbours may overlap)."""
    size = -(-cells // MAX_BLOCKS_A_SIDE)
    count = min(MAX_BLOCKS_A_SIDE, cells - size + 1)
    starts = sorted({round(float(start)) for start in np.linspace(0, cells - size, count)})
    return [(start, start + size) for start in starts]


def block_windows(features: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """(B, T, F): the clip's features once per block of its (T, rows, cols, F) maps, that block set to zero
    in every frame before pooling (the mean over the cells); with each block's (rows, cols)."""
    t, rows, cols, f = maps.shape
    spans = [(slice(*r), slice(*c)) for r in blocks(rows) for c in blocks(cols)]
    windows = np.stack([features - maps[:, r, c].sum(axis=(1, 2)) / (rows * cols) for r, c in spans])
    return windows.astype(np.float32), spans


def cell_weights(drops: np.ndarray, spans: list[tuple[slice, slice]], shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols): each block's drop shared by its cells, a cell in two blocks taking their mean."""
    total, count = np.zeros(shape), np.zeros(shape)
    for drop, (r, c) in zip(drops, spans):
        cells = (r.stop - r.start) * (c.stop - c.start)
        total[r, c] += drop / cells
        count[r, c] += 1
    return total / np.maximum(count, 1)


def explain_clip(head: Callable[[np.ndarray], np.ndarray], features: np.ndarray, maps: np.ndarray | None,
                 answer: int, action: str, frames: Sequence[int], times_s: Sequence[float],
                 frame_size: tuple[int, int]) -> Explanation:
    """The explanation of `answer` (the index of `action`) for one clip: its (T, F) `features`, its
    (T, rows, cols, F) frame `maps` where the model file gives them (else None: moments only), the
    stream indices and times of its T sampled `frames`, and the video's (width, height) as shown."""
    moments = distinct_moments(frames)
    warnings = [] if maps is not None else ["no_map"]
    if len(moments) < len(frames):
        warnings.append("one_moment" if len(moments) == 1 else "few_moments")
    parts = [features[None], moment_windows(features, moments)]
    spans: list[tuple[slice, slice]] = []
    if maps is not None:
        windows, spans = block_windows(features, maps)
        parts.append(windows)
    probabilities = head(np.concatenate(parts).astype(np.float32, copy=False))[:, answer]
    scores = log_odds(probabilities)
    drops = scores[0] - scores[1:]
    explained = [ExplainedMoment(time_s=round(float(times_s[positions[0]]), 3), weight=_round(drops[m]),
                                 frame=int(frames[positions[0]]),
                                 probability_without=round(float(probabilities[m + 1]), 4))
                 for m, positions in enumerate(moments)]
    grid = None
    if maps is not None:
        cells = cell_weights(drops[len(moments):], spans, (maps.shape[1], maps.shape[2]))
        grid = frame_map(cells, *frame_size)
    return Explanation(action=action, probability=round(float(probabilities[0]), 4), moments=explained, map=grid,
                       summary=summarize(explained, grid), warnings=warnings)


def _round(value: float) -> float:
    return float(f"{float(value):.4g}")


def _overlaps(count: int, length: float, start: float, cells: int, cell: float) -> np.ndarray:
    """(count, cells): how much of each of `count` equal parts of [0, length) each of `cells` cells of
    size `cell` from `start` covers, as a share of the part."""
    edges = np.linspace(0.0, length, count + 1)
    inner = start + cell * np.arange(cells + 1)
    low = np.maximum(edges[:-1, None], inner[None, :-1])
    high = np.minimum(edges[1:, None], inner[None, 1:])
    return np.clip(high - low, 0.0, None) / (length / count)


def frame_map(cells: np.ndarray, width: int, height: int) -> ExplanationMap:
    """The (rows, cols) cell weights of the model's centre square laid over the whole frame (as shown,
    `width` x `height`) in cells of the same size: each a mean of the cells it covers by area, where
    the part outside the square (which the model never sees) counts as 0."""
    rows, cols = cells.shape
    width, height = max(int(width), 1), max(int(height), 1)
    side = min(width, height)  # the shorter side is resized to the model's size, the centre square kept
    left, top = (width - side) / 2, (height - side) / 2
    out_rows = max(rows, round(height / (side / rows)))
    out_cols = max(cols, round(width / (side / cols)))
    weights = _overlaps(out_rows, height, top, rows, side / rows) @ cells @ \
        _overlaps(out_cols, width, left, cols, side / cols).T
    return ExplanationMap(rows=out_rows, cols=out_cols, weights=[[_round(v) for v in row] for row in weights],
                          crop=[round(left / width, 4), round(top / height, 4), round(side / width, 4),
                                round(side / height, 4)])


def _clock(seconds: float) -> str:
    """83.4 -> "1:23"; under a minute, tenths ("0:03.7"), as the page writes times."""
    if seconds < 59.95:
        return f"0:{seconds:04.1f}"
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def summarize(moments: list[ExplainedMoment], grid: ExplanationMap | None) -> str:
    """A short line: the span of the strongest moments and where in the picture the evidence lies."""
    if not moments:
        return ""
    weights = np.array([m.weight for m in moments])
    best = int(np.argmax(weights))
    if weights[best] <= 0:
        line = "no single moment decided it"
    else:
        strong = weights >= weights[best] / 2
        first = last = best
        while first > 0 and strong[first - 1]:
            first -= 1
        while last < len(moments) - 1 and strong[last + 1]:
            last += 1
        start, end = _clock(moments[first].time_s), _clock(moments[last].time_s)
        line = f"decided mostly by {start}" + (f"-{end}" if end != start else "")
    if grid is not None:
        line += ", " + region(np.array(grid.weights))
    return line


def region(weights: np.ndarray) -> str:
    """Where in the picture the strongest cell lies, in words ("upper left", "centre", ...)."""
    if weights.size == 0 or float(weights.max()) <= 0:
        return "nowhere in particular"
    row, col = np.unravel_index(int(np.argmax(weights)), weights.shape)
    vertical = ("upper", "middle", "lower")[min(2, 3 * int(row) // weights.shape[0])]
    horizontal = ("left", "centre", "right")[min(2, 3 * int(col) // weights.shape[1])]
    if vertical == "middle":
        return "centre" if horizontal == "centre" else f"{horizontal}"
    return f"{vertical} {horizontal}" if horizontal != "centre" else f"{vertical} centre"
