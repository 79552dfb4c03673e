"""The answer, typed once: `Prediction.to_dict()` keeps the keys and values every output is made of
(results files, `predict --json`, the HTTP answer), `from_dict` reads it back, and a real prediction
goes there and back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actionrec.runtime.answer import Prediction, ScoredAction, UnknownCheck, VideoFacts
from actionrec.runtime.segments import Segment
from actionrec.video.spec import VideoInfo

INFO = VideoInfo(duration_s=2.0, fps=25.0, width=128, height=96, rotation=0, num_frames=50, codec="h264",
                 container="mp4")


def a_prediction() -> Prediction:
    return Prediction.ranked(
        [ScoredAction("grow", 0.6123), ScoredAction("shrink", 0.3)],
        UnknownCheck(score="max_probability", value=0.6123, threshold=0.5, unknown=False),
        VideoFacts.read(INFO, [3, 9, 15, 21], [0.12, 0.36, 0.6, 0.84]),
        timings_ms={"decode": 4.2, "inference": 7.1, "total": 12.0},
        warnings=["the stream broke at 1.9 s"],
        segments=[Segment(0.0, 1.0, "grow", 0.7), Segment(1.0, 2.0, "shrink", 0.55)],
    )


# The dict every output is made of: its keys, their order and their values.
PINNED = {
    "action": "grow",
    "confidence": 0.6123,
    "top_k": [{"action": "grow", "confidence": 0.6123}, {"action": "shrink", "confidence": 0.3}],
    "uncertain": False,
    "video": {"duration_s": 2.0, "fps": 25.0, "width": 128, "height": 96, "rotation": 0, "num_frames": 50,
              "codec": "h264", "container": "mp4", "frames_used": [3, 9, 15, 21],
              "frame_times_s": [0.12, 0.36, 0.6, 0.84]},
    "timings_ms": {"decode": 4.2, "inference": 7.1, "total": 12.0},
    "warnings": ["the stream broke at 1.9 s"],
    "segments": [{"start_s": 0.0, "end_s": 1.0, "action": "grow", "confidence": 0.7},
                 {"start_s": 1.0, "end_s": 2.0, "action": "shrink", "confidence": 0.55}],
    "unknown_check": {"score": "max_probability", "value": 0.6123, "threshold": 0.5, "unknown": False},
}


def test_to_dict_keeps_every_key_in_order_and_every_value():
    answer = a_prediction().to_dict()
    assert json.dumps(answer) == json.dumps(PINNED)
    assert [list(answer[key]) for key in ("video", "timings_ms", "unknown_check")] == \
        [list(PINNED[key]) for key in ("video", "timings_ms", "unknown_check")]


def test_from_dict_is_to_dicts_inverse():
    prediction = a_prediction()
    assert Prediction.from_dict(prediction.to_dict()) == prediction
    assert Prediction.from_dict(json.loads(json.dumps(prediction.to_dict()))) == prediction
    bare = Prediction.ranked([ScoredAction("grow", 0.9)], UnknownCheck("max_probability", 0.9, 0.5, False),
                             VideoFacts.read(INFO, [1], [0.04]))
    bare.unknown_check = None
    assert bare.segments is None and Prediction.from_dict(bare.to_dict()) == bare


def test_the_parts_are_typed_values():
    prediction = a_prediction()
    assert prediction.top_k[0] == ScoredAction(action="grow", confidence=0.6123)
    assert prediction.video.frames_used == [3, 9, 15, 21] and prediction.unknown_check.threshold == 0.5
    with pytest.raises(AttributeError):
        prediction.top_k[0].confidence = 1.0  # frozen


def test_a_real_prediction_goes_there_and_back(untrained_model: Path):
    from actionrec.runtime.recognizer import Recognizer
    from actionrec.testing.media import long_video

    prediction = Recognizer(untrained_model).predict(long_video(12), top_k=3, segments=True)
    assert prediction.segments and prediction.unknown_check is not None
    assert isinstance(prediction.top_k[0], ScoredAction) and isinstance(prediction.video, VideoFacts)
    assert Prediction.from_dict(json.loads(json.dumps(prediction.to_dict()))) == prediction
