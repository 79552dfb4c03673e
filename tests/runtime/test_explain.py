"""Why this answer (actionrec.runtime.explain): the frame maps exported beside the features, the
moments and the map by occlusion on the model's own halves, old files that explain moments only, short
clips, and the map laid over the whole frame as the video shows it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from actionrec.runtime.answer import Explanation, Prediction
from actionrec.runtime.explain import (
    blocks,
    cell_weights,
    distinct_moments,
    explain_clip,
    frame_map,
    moment_windows,
    region,
)
from actionrec.testing.media import LABELS, encode, long_video, numbered_frames

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")


@pytest.fixture(scope="module")
def map_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained model of 8 frames of 96 pixels: 3 x 3 cells in each frame's map."""
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("explain") / "model.onnx", labels=LABELS, num_frames=8,
                                image_size=96, fitted_batch_norm=True)


@pytest.fixture(scope="module")
def old_model(map_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model as a file exported before frame maps: no `frame_maps` output."""
    import onnx

    graph = onnx.load(str(map_model))
    kept = [output for output in graph.graph.output if output.name != "frame_maps"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    path = tmp_path_factory.mktemp("old") / "model.onnx"
    onnx.save(graph, str(path))
    return path


def test_the_maps_pooled_by_their_mean_are_the_frame_features(map_model: Path):
    from actionrec.runtime.network import load_network

    network = load_network(map_model)
    assert network.maps is not None
    frames = np.random.default_rng(0).integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    maps = network.maps(frames)
    assert maps.shape == (8, 3, 3, network.card.num_features)
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), network.encoder(frames), rtol=1e-5, atol=1e-6)


def test_an_explained_answer_is_the_plain_answer_with_its_reasons(map_model: Path):
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(map_model)
    video = long_video(3)
    plain, explained = recognizer.predict(video), recognizer.predict(video, explain=True)
    assert plain.explanation is None and "explanation" not in plain.to_dict()
    assert explained.action == plain.action and abs(explained.confidence - plain.confidence) < 1e-3
    explanation = explained.explanation
    assert explanation is not None and explanation.action == explained.action and explanation.warnings == []
    assert [m.time_s for m in explanation.moments] == explained.video.frame_times_s  # one per moment, in order
    assert [m.frame for m in explanation.moments] == explained.video.frames_used
    grid = explanation.map
    assert grid is not None and (grid.rows, grid.cols) == (3, 4)  # 4:3 as shown: a column of cells beyond the square
    assert len(grid.weights) == 3 and all(len(row) == 4 for row in grid.weights)
    assert grid.crop == [0.125, 0.0, 0.75, 1.0]
    assert explanation.summary.startswith(("decided mostly by", "no single moment"))
    back = Prediction.from_dict(json.loads(json.dumps(explained.to_dict())))
    assert back == explained and isinstance(back.explanation, Explanation)


def test_with_a_timeline_the_explained_answer_encodes_each_frame_once(map_model: Path):
    """A timeline and an explanation together: the clip's frames go through the maps, the timeline's
    others through the features, none through both; the answer and the timeline are the plain ones."""
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(map_model)
    video = long_video(12)
    encoded: list[int] = []
    encode = recognizer.encode

    def counting(frames, **kwargs):
        encoded.append(len(frames))
        return encode(frames, **kwargs)

    recognizer.encode = counting  # type: ignore[method-assign]
    plain = recognizer.predict(video, segments=True)
    plain_frames, encoded[:] = sum(encoded), []
    explained = recognizer.predict(video, segments=True, explain=True)
    assert explained.explanation is not None and explained.explanation.map is not None
    assert explained.action == plain.action and [s.action for s in explained.segments or []] == \
        [s.action for s in plain.segments or []]
    through_maps = len(set(explained.video.frames_used))
    assert 0 < through_maps < plain_frames and sum(encoded) == plain_frames - through_maps, (encoded, plain_frames)


def test_the_weights_are_what_the_head_says_without_each_moment(map_model: Path):
    """Each moment's weight is the drop in the answer's log-odds with that moment replaced by the mean of
    the others, as the head itself gives it; each cell's, with that cell blanked before pooling."""
    from actionrec.runtime.network import load_network

    network = load_network(map_model)
    frames = np.random.default_rng(1).integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    maps = network.maps(frames)
    features = maps.mean(axis=(1, 2))
    answer = int(np.argmax(network.head(features[None])[0]))
    explanation = explain_clip(network.head, features, maps, answer, "x", list(range(8)), [i / 4 for i in range(8)],
                               (96, 96))

    def odds(window: np.ndarray) -> float:
        p = float(network.head(window[None])[0, answer])
        return float(np.log(p / (1 - p)))

    without_third = features.copy()
    without_third[3] = np.delete(features, 3, axis=0).mean(axis=0)
    assert explanation.moments[3].weight == pytest.approx(odds(features) - odds(without_third), rel=1e-3, abs=1e-5)
    blanked = maps.copy()
    blanked[:, 1, 2] = 0
    assert explanation.map is not None
    assert explanation.map.weights[1][2] == pytest.approx(odds(features) - odds(blanked.mean(axis=(1, 2))),
                                                          rel=1e-3, abs=1e-5)


def test_the_moment_the_answer_rests_on_weighs_most():
    """A head that reads one moment and one cell alone: the explanation finds both."""
    rng = np.random.default_rng(2)
    maps = rng.random((6, 3, 3, 5)).astype(np.float32)  # 3 x 3 cells: blanked one at a time
    maps[:, 2, 1, 0] += 3.0  # one cell carries feature 0 in every frame...
    maps[4, :, :, 0] += 1.0  # ...and one moment more of it

    def head(windows: np.ndarray) -> np.ndarray:  # the answer's logit: feature 0, with moment 4 counted twice
        logit = windows[:, :, 0].sum(axis=1) + windows[:, 4, 0]
        return np.stack([1 / (1 + np.exp(-(logit - 8))), 1 / (1 + np.exp(logit - 8))], axis=1)

    explanation = explain_clip(head, maps.mean(axis=(1, 2)), maps, 0, "a", [0, 5, 10, 15, 20, 25],
                               [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], (100, 100))
    weights = [m.weight for m in explanation.moments]
    assert int(np.argmax(weights)) == 4
    assert explanation.map is not None and np.unravel_index(np.argmax(explanation.map.weights), (3, 3)) == (2, 1)


def test_a_file_without_frame_maps_explains_its_moments_and_says_why_no_map(old_model: Path):
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(old_model)
    assert recognizer.network.maps is None
    explanation = recognizer.predict(long_video(2), explain=True).explanation
    assert explanation is not None and explanation.map is None and explanation.warnings == ["no_map"]
    assert len(explanation.moments) == 8 and "," not in explanation.summary  # no place in the picture


def test_a_clip_too_short_for_its_moments_explains_the_frames_it_has(map_model: Path):
    from actionrec.runtime.recognizer import Recognizer

    short = encode(numbered_frames(5), fps=25)  # 5 frames for 8 samples: repeats
    prediction = Recognizer(map_model).predict(short, explain=True)
    explanation = prediction.explanation
    assert explanation is not None and explanation.warnings == ["few_moments"]
    assert len(explanation.moments) == len(set(prediction.video.frames_used)) == 5
    assert [m.frame for m in explanation.moments] == sorted(set(prediction.video.frames_used))


def test_repeated_frames_are_one_moment_replaced_together():
    assert distinct_moments([0, 0, 1, 2, 2, 2]) == [[0, 1], [2], [3, 4, 5]]
    features = np.array([10, 12, 20, 30, 31, 32], dtype=np.float32)[:, None]
    windows = moment_windows(features, distinct_moments([0, 0, 1, 2, 2, 2]))
    assert windows[0, :, 0].tolist() == [28.25, 28.25, 20, 30, 31, 32]  # both positions: the others' mean
    assert windows[1, :, 0].tolist() == [10, 12, 23, 30, 31, 32]


def test_the_map_covers_the_whole_frame_as_shown_with_nothing_outside_the_square():
    cells = np.ones((7, 7))
    wide = frame_map(cells, 640, 480)
    assert (wide.rows, wide.cols) == (7, 9) and wide.crop == [0.125, 0.0, 0.75, 1.0]
    weights = np.array(wide.weights)
    assert np.allclose(weights[:, 2:7], 1) and np.all(weights[:, [0, -1]] < 0.2)  # the edges: mostly unseen
    tall = frame_map(cells, 480, 640)  # a phone video, rotation applied: the square is in the middle rows
    assert (tall.rows, tall.cols) == (9, 7) and np.allclose(np.array(tall.weights)[2:7], 1)
    corner = np.zeros((7, 7))
    corner[0, 0] = 1
    assert region(np.array(frame_map(corner, 640, 480).weights)) == "upper left"


def test_a_large_map_is_blanked_in_at_most_9_blocks_their_drops_shared_by_their_cells():
    """A 224-pixel model's 7 x 7 map: 3 x 3 blocks spread from edge to edge (9 head windows); a cell in
    two blocks takes their mean."""
    assert blocks(7) == [(0, 3), (2, 5), (4, 7)] and blocks(3) == [(0, 1), (1, 2), (2, 3)]
    assert blocks(14) == [(0, 5), (4, 9), (9, 14)] and blocks(1) == [(0, 1)]
    spans = [(slice(*r), slice(*c)) for r in blocks(7) for c in blocks(7)]
    drops = np.zeros(9)
    drops[0] = 9.0  # the upper left block
    drops[8] = 18.0  # the lower right, overlapping the middle ones in row and column 4
    weights = cell_weights(drops, spans, (7, 7))
    assert weights[0, 0] == weights[1, 1] == 1.0 and weights[6, 6] == weights[5, 5] == 2.0
    assert weights[2, 2] == 0.25 and weights[4, 4] == 0.5 and weights[3, 3] == 0


def test_a_map_that_cannot_run_or_has_the_wrong_shape_leaves_the_moments(map_model: Path):
    """A file from a stranger whose `frame_maps` part fails or gives something else: the answer comes,
    as the plain answer, explaining its moments with `no_map`."""
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(map_model)
    video = long_video(2)
    plain = recognizer.predict(video)

    def broken(frames: np.ndarray) -> np.ndarray:
        raise RuntimeError("this graph's map part does not run")

    for maps in (broken, lambda frames: np.zeros((len(frames), 3, 3, 7), np.float32)):
        recognizer.network.maps = maps  # type: ignore[assignment]
        explained = recognizer.predict(video, explain=True)
        assert explained.action == plain.action and explained.confidence == plain.confidence
        assert explained.explanation is not None and explained.explanation.warnings == ["no_map"]
        assert explained.explanation.map is None and len(explained.explanation.moments) == 8
