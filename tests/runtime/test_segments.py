"""Timelines from sample evidence: where the windows and the frames say an action changes."""

from __future__ import annotations

import numpy as np

from actionrec.runtime.segments import SampleEvidence, most_likely_labels

LABELS = ["a", "b", "c"]
T = 8


def one_hot(labels: list[int], sure: float = 0.9) -> np.ndarray:
    probs = np.full((len(labels), 3), (1 - sure) / 2)
    probs[np.arange(len(labels)), labels] = sure
    return probs


def windows_of(truth: list[int], stride: int = T // 2) -> tuple[list[int], np.ndarray]:
    """Each window says the action most of its samples show, as a classifier of whole clips would."""
    firsts = list(range(0, len(truth) - T + 1, stride))
    return firsts, one_hot([int(np.bincount(truth[f : f + T], minlength=3).argmax()) for f in firsts])


def test_a_boundary_falls_where_the_frames_turn_not_a_window_late():
    truth = [0] * 23 + [1] * 25  # a change at sample 23, between two windows' centres
    evidence = SampleEvidence(len(truth), 3, T)
    evidence.add_windows(*windows_of(truth))
    evidence.add_frames(list(range(len(truth))), one_hot(truth, sure=0.7))
    segments = evidence.segments(0.5, 24.0, LABELS)
    assert [s.action for s in segments] == ["a", "b"]
    assert segments[0].start_s == 0 and segments[1].end_s == 24.0
    assert segments[1].start_s == 23 * 0.5
    assert 0.8 < segments[0].confidence <= 0.9


def test_an_action_shorter_than_a_window_is_found():
    truth = [0] * 20 + [2] * 5 + [1] * 20  # 5 samples of "c": no window holds mostly "c"
    evidence = SampleEvidence(len(truth), 3, T)
    evidence.add_windows(*windows_of(truth))
    evidence.add_frames(list(range(len(truth))), one_hot(truth))
    assert [(s.action, s.start_s) for s in evidence.segments(1.0, 45.0, LABELS)] == [("a", 0), ("c", 20), ("b", 25)]


def test_one_odd_frame_opens_no_segment():
    truth = [0] * 30
    frames = list(truth)
    frames[12] = 1
    evidence = SampleEvidence(30, 3, T)
    evidence.add_windows(*windows_of(truth))
    evidence.add_frames(list(range(30)), one_hot(frames))
    assert [s.action for s in evidence.segments(1.0, 30.0, LABELS)] == ["a"]


def test_the_best_path_pays_for_each_change():
    scores = np.log(one_hot([0, 0, 1, 0, 0, 2, 2, 2, 2]))
    assert most_likely_labels(scores, switch_cost=0.0).tolist() == [0, 0, 1, 0, 0, 2, 2, 2, 2]
    assert most_likely_labels(scores, switch_cost=5.0).tolist() == [0, 0, 0, 0, 0, 2, 2, 2, 2]


def test_a_broken_stream_ends_the_timeline_where_its_windows_reached():
    truth = [0] * 40
    evidence = SampleEvidence(40, 3, T)
    firsts, probs = windows_of(truth[:24])  # windows up to sample 24 only
    evidence.add_windows(firsts, probs)
    evidence.add_frames(list(range(40)), one_hot(truth))
    segments = evidence.segments(1.0, 24.0, LABELS, covered=24)
    assert segments[-1].end_s == 24.0 and len(segments) == 1
