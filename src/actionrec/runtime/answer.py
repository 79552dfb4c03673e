"""The answer of a prediction, typed once: `Prediction` and its parts (`ScoredAction`, `VideoFacts`,
the model file's `UnknownCheck`, the timeline's `Segment`s, each region's `RegionAnswer`, and,
where asked for, its `Explanation`).

Every reader takes these values; `Prediction.to_dict()` is the one form they take outside Python
(results files, `actionrec predict --json`, what Ray sends back), and `Prediction.from_dict` reads it
back. The HTTP answer is made from a prediction in one place, `actionrec.serve.schemas`. A new field of
the answer is a field here, and one in the HTTP schema if the API shows it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from actionrec.modelfile.unknown import UnknownCheck
from actionrec.runtime.segments import Segment
from actionrec.video.spec import VideoInfo


@dataclass(frozen=True)
class ScoredAction:
    """One of the model's actions and its probability for the video (rounded to 4 places)."""

    action: str
    confidence: float


@dataclass(frozen=True)
class VideoFacts:
    """The video as measured while reading it (`VideoInfo`'s facts), and the frames the answer read:
    their indices in the stream and their times in seconds."""

    duration_s: float
    fps: float
    width: int  # as displayed, after rotation
    height: int
    rotation: int
    num_frames: int  # frames in the stream, counted from its packets
    codec: str
    container: str
    frames_used: list[int]
    frame_times_s: list[float]

    @classmethod
    def read(cls, info: VideoInfo, frames_used: Iterable[int], frame_times_s: Iterable[float]) -> VideoFacts:
        return cls(**info.to_dict(), frames_used=[int(i) for i in frames_used], frame_times_s=list(frame_times_s))


@dataclass(frozen=True)
class ExplainedMoment:
    """One sampled moment of the clip and how much the answer rests on it: `weight` is the drop in the
    answer's log-odds when the moment is replaced by the rest of the clip's mean (larger: more evidence for the
    answer; negative: evidence against it, the answer surer without it), `probability_without` the
    answer's probability then; `frame` its index in the stream."""

    time_s: float
    weight: float
    frame: int
    probability_without: float


@dataclass(frozen=True)
class ExplanationMap:
    """Where in the picture the evidence lies: `rows` x `cols` cells over the whole frame as the video
    shows it (rotation applied), `weights[row][col]` the drop in the answer's log-odds when that part of
    every sampled frame is blanked (larger: more evidence). `crop`: the square the model sees, as
    [left, top, width, height] shares of the frame; cells outside it weigh 0 (no evidence was seen)."""

    rows: int
    cols: int
    weights: list[list[float]]
    crop: list[float]


@dataclass(frozen=True)
class Explanation:
    """Why the answer is `action` (with `probability`): its `moments` in time order, one per distinct
    sampled frame, the `map` where the model file gives one (else None, and the warning code
    `no_map`), a short `summary` for people, and warning codes (see `actionrec.runtime.explain`)."""

    action: str
    probability: float
    moments: list[ExplainedMoment]
    map: ExplanationMap | None
    summary: str
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        grid = data.get("map")
        return cls(**data | {"moments": [ExplainedMoment(**item) for item in data["moments"]],
                             "map": None if grid is None else ExplanationMap(**grid),
                             "warnings": list(data.get("warnings", []))})


@dataclass
class RegionAnswer:
    """One region's answer (`Recognizer.predict(..., regions=...)`): its `id` (`r1c2` a grid's row 1,
    column 2; `zone1` a zone; `person1` a track), its `box` (x, y, w, h in the displayed video's
    pixels; a track's at the middle moment, or the seen moment nearest it), for a track its `boxes`
    where it was seen (`[t, x, y, w, h]`, t in seconds), and its clip's answer as a video's."""

    id: str
    box: list[int]
    action: str
    confidence: float
    top_k: list[ScoredAction]
    uncertain: bool
    boxes: list[list[float]] | None = None
    segments: list[Segment] | None = None
    unknown_check: UnknownCheck | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegionAnswer:
        check, segments = data.get("unknown_check"), data.get("segments")
        return cls(**data | {
            "top_k": [ScoredAction(**item) for item in data["top_k"]],
            "segments": None if segments is None else [Segment(**item) for item in segments],
            "unknown_check": None if check is None else UnknownCheck(**check),
        })


@dataclass
class Prediction:
    """What a video shows: the best action, the `top_k` best first, whether it is likely none of them
    (`uncertain`, from `unknown_check`), the video's facts, timings (decode, inference, total, in
    milliseconds), warnings met reading it, the timeline's segments when one was asked for,
    where regions were asked for, each region's answer (`regions`: an empty list where none was
    found, a warning saying so), and why the answer is what it is when an explanation was asked for."""

    action: str
    confidence: float
    top_k: list[ScoredAction]  # best first
    uncertain: bool  # likely none of the known actions: `unknown_check`'s value under its threshold
    video: VideoFacts
    timings_ms: dict[str, float]  # decode, inference, total
    warnings: list[str] = field(default_factory=list)
    segments: list[Segment] | None = None
    unknown_check: UnknownCheck | None = None
    regions: list[RegionAnswer] | None = None
    explanation: Explanation | None = None

    @classmethod
    def ranked(cls, top_k: list[ScoredAction], check: UnknownCheck, video: VideoFacts, *,
               timings_ms: dict[str, float] | None = None, warnings: list[str] | None = None,
               segments: list[Segment] | None = None, explanation: Explanation | None = None) -> Prediction:
        """The prediction whose best action is the first of `top_k`, uncertain as `check` says."""
        return cls(action=top_k[0].action, confidence=top_k[0].confidence, top_k=list(top_k), uncertain=check.unknown,
                   video=video, timings_ms=dict(timings_ms or {}), warnings=list(warnings or []), segments=segments,
                   unknown_check=check, explanation=explanation)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: its fields in order, each part as a dict of its own fields
        (`regions` only where regions were asked for, the `explanation` only where there is one: an
        answer without them reads as it always has)."""
        data = asdict(self)
        for optional in ("regions", "explanation"):
            if data[optional] is None:
                del data[optional]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        """The prediction `to_dict` gave `data` for: its inverse."""
        check, segments, regions = data.get("unknown_check"), data.get("segments"), data.get("regions")
        explanation = data.get("explanation")
        return cls(**data | {
            "top_k": [ScoredAction(**item) for item in data["top_k"]],
            "video": VideoFacts(**data["video"]),
            "timings_ms": dict(data["timings_ms"]),
            "warnings": list(data.get("warnings", [])),
            "segments": None if segments is None else [Segment(**item) for item in segments],
            "unknown_check": None if check is None else UnknownCheck(**check),
            "regions": None if regions is None else [RegionAnswer.from_dict(item) for item in regions],
            "explanation": None if explanation is None else Explanation.from_dict(explanation),
        })
