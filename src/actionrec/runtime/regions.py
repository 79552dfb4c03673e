"""An answer for each region of a video (`Recognizer.predict(..., regions=...)`): who does what, where.

The video is decoded once, at the moments the one sampling rule picks for a whole-video answer
(`actionrec.video.decode.whole_video_plan`). At each moment the frame, as displayed, gives:

- the whole frame, model-ready exactly as a plain prediction takes it (the answer's top level);
- each region's crop, model-ready by the same rule (`actionrec.video.regions.crop_input`): a grid's
  cells and fixed zones as they are; a person's box first made square around its centre (so the
  model's centre square holds the whole person), the detector run on that moment's frame alone.

People are linked into tracks over the moments (`actionrec.runtime.tracks`); at a moment where a
track was not seen, its clip repeats its crop from the nearest moment it was. Every crop is encoded
by the same Encoder, each region's (T, F) features classified by the same Head, and each region is
ranked, with the "none of these" rule, as a whole video is.

A timeline per cell or zone (`answer_region_stream`) takes another road: the frames a timeline
reads, streamed in chunks with each region's crops (`actionrec.video.decode.FixedRegionCrops`), and
a `PredictionBuilder` per region, so each region's timeline is made as a video's is.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import av
import numpy as np

from actionrec.errors import UndecodableVideoError
from actionrec.runtime.answer import Prediction, RegionAnswer, VideoFacts
from actionrec.runtime.detectors import Detector, load_detector
from actionrec.runtime.prediction import PredictionBuilder, Stages
from actionrec.runtime.tracks import Track, link_tracks
from actionrec.video import ClipSpec, DecodeLimits, VideoInfo, VideoSource
from actionrec.video.decode import read_planned, to_model_input, whole_video_plan
from actionrec.video.regions import MAX_REGIONS, PixelBox, RegionSpec, crop_input, displayed_rgb, square_box
from actionrec.video.stream import ClipReplanned, FrameChunk, FramePlan, FramesDone, PredictionMessage

ENCODE_BATCH = 32  # crops encoded per call to the encoder
PERSON_CONTEXT = 1.0  # a person's crop: the square of their box's longer side times this
NO_PEOPLE = "no person was found in the video: there are no regions to answer for"


@dataclass
class RegionFrame:
    """What one sampled moment gives: its whole frame and each box's crop, model-ready."""

    whole: np.ndarray  # (S, S, 3)
    crops: np.ndarray  # (n, S, S, 3), one per box
    boxes: list[PixelBox]  # the regions' boxes (for people, as detected, not squared)


class RegionSampler:
    """What decoding keeps of each sampled frame (a `Convert`): a `RegionFrame`."""

    def __init__(self, spec: RegionSpec, image_size: int, detector: Detector | None) -> None:
        self.spec, self.image_size, self.detector = spec, image_size, detector
        self.detect_s = 0.0

    def __call__(self, frame: av.VideoFrame) -> RegionFrame:
        rgb = displayed_rgb(frame)
        height, width = rgb.shape[:2]
        if self.detector is None:
            boxes = cropped = self.spec.pixel_boxes(width, height)
        else:
            started = time.perf_counter()
            boxes = [box for box, _ in self.detector(rgb)]
            self.detect_s += time.perf_counter() - started
            cropped = [square_box(box, width, height, PERSON_CONTEXT) for box in boxes]
        crops = [crop_input(rgb, box, self.image_size) for box in cropped]
        size = self.image_size
        return RegionFrame(to_model_input(frame, size),
                           np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8), list(boxes))


@dataclass
class RegionsRead:
    """What decoding a video for its regions gives (in a server's worker, or here): each sampled
    moment's `RegionFrame`, which frames they are and when, the video, and how long it took."""

    frames: list[RegionFrame]
    clip: list[int]
    times: list[float]
    info: VideoInfo
    warnings: list[str]
    decode_ms: float
    detect_ms: float | None  # None for a grid or zones


_DETECTORS: dict[str, Detector | None] = {}  # a worker process's detectors, loaded at first need


def read_regions(source: VideoSource, spec: ClipSpec, limits: DecodeLimits, regions: RegionSpec, *,
                 name: str | None = None, detector: Detector | None = None) -> RegionsRead:
    """Decode `source` once, at the frames the sampling rule picks, keeping each moment's whole frame
    and regions (people found by `detector`, else by the one `regions` names, loaded once a process)."""
    started = time.perf_counter()
    if detector is None and not regions.fixed:
        key = regions.text
        if key not in _DETECTORS:
            _DETECTORS[key] = load_detector(regions)
        detector = _DETECTORS[key]
    sampler = RegionSampler(regions, spec.image_size, detector)
    read = read_planned(source, spec, whole_video_plan(spec), limits, name, convert=sampler)
    clip = [int(i) for i in read.clips[0].indices]
    decode_ms = (time.perf_counter() - started - sampler.detect_s) * 1000
    return RegionsRead([read.frames[i] for i in clip], clip, [round(float(read.times[i]), 3) for i in clip],
                       read.info, list(read.warnings), round(decode_ms, 1),
                       None if detector is None else round(sampler.detect_s * 1000, 1))


def predict_regions(stages: Stages, source: VideoSource, spec: RegionSpec, detector: Detector | None, *,
                    top_k: int = 5, limits: DecodeLimits = DecodeLimits(), name: str | None = None) -> Prediction:
    """The whole video's answer, with each region's in `regions` (see the module's docstring)."""
    started = time.perf_counter()
    read = read_regions(source, stages.spec, limits, spec, name=name, detector=detector)
    prediction = answer_regions(stages, read, spec, top_k)
    prediction.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 1)
    return prediction


def answer_regions(stages: Stages, read: RegionsRead, spec: RegionSpec, top_k: int = 5,
                   max_tracks: int = MAX_REGIONS) -> Prediction:
    """The answers of what `read_regions` read: every crop encoded, each region's clip classified and
    ranked; of people, the `max_tracks` tracks seen most often."""
    started = time.perf_counter()
    frames, times, warnings = read.frames, read.times, list(read.warnings)
    if spec.fixed:
        tracks = [Track({t: (r, frame.boxes[r]) for t, frame in enumerate(frames)})
                  for r in range(len(frames[0].boxes))]
        ids = spec.region_ids()
    else:
        tracks, dropped = link_tracks([frame.boxes for frame in frames], max_tracks)
        ids = [f"person{number + 1}" for number in range(len(tracks))]
        if not tracks:
            warnings.append(NO_PEOPLE + (f" ({dropped} brief detections were dropped as noise)" if dropped else ""))
    whole, clips = _encoded(stages, frames, tracks)
    probs = stages.head(np.concatenate([whole[None], clips]) if len(clips) else whole[None])
    top, check = stages.rank(probs[0], top_k, whole)
    regions = []
    for number, track in enumerate(tracks):
        region_top, region_check = stages.rank(probs[number + 1], top_k, clips[number])
        regions.append(RegionAnswer(
            id=ids[number], box=list(track.middle_box(len(frames))), action=region_top[0].action,
            confidence=region_top[0].confidence, top_k=region_top, uncertain=region_check.unknown,
            boxes=None if spec.fixed else [[times[t], *box] for t, (_, box) in sorted(track.seen.items())],
            unknown_check=region_check))
    inference_ms = round((time.perf_counter() - started) * 1000, 1)
    timings = {"decode": read.decode_ms} | ({} if read.detect_ms is None else {"detect": read.detect_ms})
    timings |= {"inference": inference_ms, "total": round(sum(timings.values()) + inference_ms, 1)}
    prediction = Prediction.ranked(top, check, VideoFacts.read(read.info, read.clip, times), timings_ms=timings,
                                   warnings=warnings)
    prediction.regions = regions
    return prediction


def answer_region_stream(stages: Stages, messages: Iterable[PredictionMessage], spec: RegionSpec,
                         top_k: int = 5) -> Prediction:
    """The whole video's answer and timeline, and each fixed region's (grid cells, zones), from the
    messages of `stream_prediction_frames(..., convert=FixedRegionCrops(spec, S))`: each chunk's
    (n, regions + 1, S, S, 3) frames go to a `PredictionBuilder` per region (the whole video first),
    so each region's timeline is made exactly as a video's is, memory bounded whatever the length."""
    builders: list[PredictionBuilder] = []
    for message in messages:
        if isinstance(message, FramePlan):
            builders = [PredictionBuilder(stages, message) for _ in range(len(spec.region_ids()) + 1)]
        elif not builders:
            raise ValueError(f"expected a FramePlan first, got {type(message).__name__}")
        elif isinstance(message, FrameChunk):
            for number, builder in enumerate(builders):
                builder.add(FrameChunk(message.indices, message.frames[:, number]))
        elif isinstance(message, ClipReplanned):
            for builder in builders:
                builder.replan(message.clip)
        elif isinstance(message, FramesDone):
            answers = [builder.finish(message, top_k) for builder in builders]
            break
    else:
        raise UndecodableVideoError("the video's frames stopped before the end of the reading")
    prediction = answers[0]
    boxes = spec.pixel_boxes(prediction.video.width, prediction.video.height)
    prediction.regions = [RegionAnswer(id=region, box=list(box), action=answer.action, confidence=answer.confidence,
                                       top_k=answer.top_k, uncertain=answer.uncertain, segments=answer.segments,
                                       unknown_check=answer.unknown_check)
                          for region, box, answer in zip(spec.region_ids(), boxes, answers[1:])]
    prediction.timings_ms["inference"] = round(sum(answer.timings_ms["inference"] for answer in answers), 1)
    return prediction


def _encoded(stages: Stages, frames: list[RegionFrame], tracks: list[Track]) -> tuple[np.ndarray, np.ndarray]:
    """The whole frames' (T, F) features and each track's (tracks, T, F): every crop encoded once."""
    crops = [frame.crops for frame in frames]
    offsets = np.cumsum([len(frames)] + [len(c) for c in crops])
    images = np.concatenate([np.stack([frame.whole for frame in frames]), *crops])
    features = np.concatenate([stages.encode(images[i : i + ENCODE_BATCH])
                               for i in range(0, len(images), ENCODE_BATCH)])
    whole = features[: len(frames)]
    clips = [[features[offsets[track.nearest(t)] + track.seen[track.nearest(t)][0]] for t in range(len(frames))]
             for track in tracks]
    return whole, np.asarray(clips, dtype=features.dtype).reshape(len(tracks), len(frames), features.shape[-1])
