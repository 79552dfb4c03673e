"""The answer stage of a prediction: frames as they stream in -> encoded -> windows classified ->
a `Prediction`. `PredictionBuilder` encodes each frame once, classifies timeline windows as their
samples come in (a batch at a time, with the samples' own frames), and keeps only what later
windows still need, so memory stays bounded whatever the video's length.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Protocol

import numpy as np

from actionrec.errors import UndecodableVideoError
from actionrec.runtime.answer import Explanation, Prediction, ScoredAction, UnknownCheck, VideoFacts
from actionrec.runtime.explain import explain_clip
from actionrec.runtime.network import Encoder, MapEncoder
from actionrec.runtime.segments import SampleEvidence, Segment
from actionrec.video import ClipSpec, Timeline
from actionrec.video.stream import FrameChunk, FramePlan, FramesDone

# Windows per call to the head: a timeline's windows and its samples' own frames (each read as a
# window of that frame alone) go through it together, about one call every WINDOW_BATCH of them
# rather than one a chunk for the frames and one every 32 windows. Measured here (2 cores, the
# 8-frame 64 px model, a 10-minute 720p timeline): 178 calls became 50.
WINDOW_BATCH = 64

# A timeline's encoder goes to its share of the cores once a chunk comes later than this share of
# the last encode's time (the decoder is clearly the slower stage), and stays there while chunks
# come later than the second share (the decoder is still the slower).
DECODER_BEHIND = 0.25
DECODER_STILL_BEHIND = 0.02


class Stages(Protocol):
    """What a prediction is built with (a `Recognizer` is one): the model's two halves, as `encode`
    (which may batch frames across requests) and `head`, and the ranking of one clip's probabilities."""

    labels: list[str]
    spec: ClipSpec
    timeline: Timeline
    encoder: Encoder

    def encode(self, frames: np.ndarray, *, alongside_decoding: bool = False) -> np.ndarray: ...

    def head(self, units: np.ndarray) -> np.ndarray: ...

    def rank(self, probs: np.ndarray, top_k: int, features: np.ndarray | None = None
             ) -> tuple[list[ScoredAction], UnknownCheck]: ...


class PredictionBuilder:
    """Turns streamed frames into a prediction: encodes each frame once, classifies timeline windows
    as their samples come in, a batch at a time, and keeps only what later windows still need. With
    `explain`, the clip's frames are encoded to their feature maps where `maps` is given (pooled, they
    are the features the answer reads), and the answer carries its explanation."""

    def __init__(self, stages: Stages, plan: FramePlan, *, explain: bool = False,
                 maps: MapEncoder | None = None, features: int | None = None) -> None:
        self.stages = stages
        self.plan = plan
        self.explain = explain
        self.maps = maps if explain else None
        self.features = features  # the width of a frame's features, which a map's cells must have
        self.clip_maps: dict[int, np.ndarray] = {}  # frame index -> its feature map, with `maps`
        self.timeline = bool(plan.windows)
        # frame index -> its frame (or features), None until it comes
        self.clip: dict[int, np.ndarray | None] = {int(i): None for i in plan.clip}
        self.samples: dict[int, np.ndarray] = {}  # sample position -> its encoded frame
        self.positions: dict[int, list[int]] = {}  # frame index -> sample positions it serves
        for position, index in enumerate(plan.samples):
            self.positions.setdefault(int(index), []).append(position)
        self.ready = 0  # samples 0..ready-1 are in
        self.next_window = 0
        # What each sample's windows and own frame say.
        self.evidence = SampleEvidence(len(plan.samples), len(stages.labels), stages.spec.num_frames) \
            if self.timeline else None
        self.window_probs: list[np.ndarray] = []
        # Samples' own frames waiting for the head: (their sample positions, their features).
        self.frames_waiting: list[tuple[list[int], np.ndarray]] = []
        self.inference_s = 0.0
        self.added_at: float | None = None  # when the last chunk was done with
        self.encode_s = 0.0  # how long the last chunk's encode took
        self.encoded_alongside = False  # whether it kept to the encoder's share of the cores

    def add(self, chunk: FrameChunk) -> None:
        started = time.perf_counter()
        self.encoded_alongside = self._waiting_on_decoder(started)
        units = self._encode(chunk)
        self.encode_s = time.perf_counter() - started
        for index, unit in zip(chunk.indices.tolist(), units):
            if index in self.clip:
                self.clip[index] = unit
            for position in self.positions.get(index, ()):
                if position >= self.ready:
                    self.samples[position] = unit
            if self.evidence is not None and index in self.positions:
                self.frames_waiting.append((self.positions[index], unit))
        while self.ready in self.samples:
            self.ready += 1
        self._classify_windows(final=False)
        self.added_at = time.perf_counter()
        self.inference_s += self.added_at - started

    def _encode(self, chunk: FrameChunk) -> np.ndarray:
        """The chunk's frames encoded; with frame maps to explain by, the clip's frames through the maps,
        pooled by their mean, and the rest as ever: every frame is encoded once."""
        rows = [row for row, index in enumerate(chunk.indices.tolist()) if index in self.clip] \
            if self.maps is not None else []
        maps = self._maps(chunk.frames[rows]) if rows and self.maps is not None else None
        if maps is None:
            return self.stages.encode(chunk.frames, alongside_decoding=self.encoded_alongside)
        pooled = maps.mean(axis=(1, 2), dtype=np.float32)
        clip_rows = set(rows)
        others = [row for row in range(len(chunk.indices)) if row not in clip_rows]
        units = pooled if not others else np.empty((len(chunk.indices), pooled.shape[1]), np.float32)
        if others:  # a timeline's other frames, each encoded once: the clip's through the maps only
            units[rows] = pooled
            units[others] = self.stages.encode(chunk.frames[others], alongside_decoding=self.encoded_alongside)
        for row, frame_map in zip(rows, maps):
            self.clip_maps[int(chunk.indices[row])] = frame_map
        return units

    def _maps(self, frames: np.ndarray) -> np.ndarray | None:
        """The frames' feature maps, or None (and no more maps for this prediction: it explains its
        moments only, `no_map`) where the file's map cannot be run or is not (n, rows, cols, features)."""
        assert self.maps is not None
        try:
            maps = self.maps(frames)
        except Exception:  # a file from a stranger whose map part does not run: the answer still comes
            maps = None
        if maps is None or maps.ndim != 4 or len(maps) != len(frames) or 0 in maps.shape[1:3] \
                or (self.features is not None and maps.shape[3] != self.features):
            self.maps, self.clip_maps = None, {}
            return None
        return maps

    def _waiting_on_decoder(self, now: float) -> bool:
        """Whether this timeline's chunk came late, the decoder (still reading the next) being the
        slower stage: then the encoder keeps to its share of the cores without holding anything up
        (see `actionrec.runtime.cores`). Late is a quarter of the last encode's time to go to the share,
        a fiftieth to stay there. Where chunks wait for the encoder (small frames, cheap to
        decode) it takes every core; so does a clip's answer, four short encodes."""
        if not self.timeline or self.added_at is None:
            return False
        late = DECODER_STILL_BEHIND if self.encoded_alongside else DECODER_BEHIND
        return now - self.added_at > late * self.encode_s

    def replan(self, clip: np.ndarray) -> None:
        self.clip = {int(i): None for i in clip}
        self.clip_maps = {}
        self.plan = replace(self.plan, clip=clip)

    def _classify_windows(self, final: bool) -> None:
        """The head over the windows whose samples are all in and the samples' own frames (each
        repeated into a window), `WINDOW_BATCH` at a time; with `final`, over all that is left."""
        windows, size = self.plan.windows, self.stages.spec.num_frames
        ready = [w for w in range(self.next_window, len(windows)) if windows[w][0] + size <= self.ready]
        while len(ready) + len(self.frames_waiting) >= (1 if final else WINDOW_BATCH):
            batch, ready = ready[:WINDOW_BATCH], ready[WINDOW_BATCH:]
            frames = self.frames_waiting[: WINDOW_BATCH - len(batch)]
            del self.frames_waiting[: len(frames)]
            units = [np.stack([self.samples[windows[w][0] + t] for t in range(size)]) for w in batch]
            units += [np.repeat(unit[None], size, axis=0) for _, unit in frames]
            probs = self.stages.head(np.stack(units))
            if batch:
                assert self.evidence is not None  # windows are a timeline's
                self.evidence.add_windows([windows[w][0] for w in batch], probs[: len(batch)])
                self.window_probs.append(probs[: len(batch)])
                self.next_window = batch[-1] + 1
            for (positions, _), frame_probs in zip(frames, probs[len(batch):]):
                assert self.evidence is not None
                self.evidence.add_frames(positions, frame_probs[None])
        keep_from = windows[self.next_window][0] if self.next_window < len(windows) else self.ready
        for position in [p for p in self.samples if p < keep_from]:
            del self.samples[position]

    def finish(self, done: FramesDone, top_k: int) -> Prediction:
        started = time.perf_counter()
        self._classify_windows(final=True)
        clip = [self.clip[int(i)] for i in self.plan.clip]
        units = [unit for unit in clip if unit is not None]
        if len(units) < len(clip):
            raise UndecodableVideoError("the video's frames stopped before the end of the reading")
        stacked = np.stack(units)
        probs = self.stages.head(stacked[None])[0]
        top, check = self.stages.rank(probs, top_k, stacked)
        segments = self._segments(done, top[0])
        video = VideoFacts.read(done.info, self.plan.clip, done.clip_times)
        explanation = self._explanation(stacked, probs, video) if self.explain else None
        self.inference_s += time.perf_counter() - started
        return Prediction.ranked(
            top, check, video,
            timings_ms={"decode": round(done.decode_ms, 1), "inference": round(self.inference_s * 1000, 1)},
            warnings=done.warnings, segments=segments, explanation=explanation)

    def _explanation(self, features: np.ndarray, probs: np.ndarray, video: VideoFacts) -> Explanation:
        """Why the clip's answer is its best action (`actionrec.runtime.explain`)."""
        answer = int(np.argmax(probs))
        frames = [int(i) for i in self.plan.clip]
        maps = None
        if self.maps is not None and all(i in self.clip_maps for i in frames):
            maps = np.stack([self.clip_maps[i] for i in frames])
        return explain_clip(self.stages.head, features, maps, answer, self.stages.labels[answer], frames,
                            video.frame_times_s, (video.width, video.height))

    def _segments(self, done: FramesDone, best: ScoredAction) -> list[Segment] | None:
        """The timeline, from the windows classified; None when none was asked for."""
        if self.timeline and self.next_window:
            windows = self.plan.windows[: self.next_window]
            whole = self.next_window == len(self.plan.windows)  # else the stream broke before the last window
            end_s = done.info.duration_s if whole else windows[-1][2]
            assert self.evidence is not None  # a timeline gathers it
            covered = windows[-1][0] + self.stages.spec.num_frames
            return self.evidence.segments(self.stages.timeline.interval_s, end_s, self.stages.labels, covered)
        if self.plan.timeline:  # shorter than one window (or broken before one): the clip is the timeline
            return [Segment(0.0, round(done.info.duration_s, 3), best.action, best.confidence)]
        return None
