"""Regions measured on real footage (`actionrec benchmark-regions`): videos built from held-out clips
whose answer per region is known, and how often each source names it.

- 2 x 2 mosaics: four clips of four different actions the model knows, each in its own quarter
  (UCF101 clips are 320 x 240, so a mosaic is 640 x 480), answered with `grid:2x2`;
- side by side: two clips of two actions, 640 x 240, answered with `grid:2x1`;
- people: the same mosaics answered with `people`: in how many cells a track was found, and how
  many tracks are named with their cell's action (a track's cell: where its box's centre is).

Clips are taken from the groups given (UCF101 names clips `v_Class_gNN_cNN`: held-out groups, never
clips of groups the model was trained on), in turn, so each clip is used about as often as the
others. Each video lasts as long as its longest clip, the shorter ones playing again from their start
(as a camera beside another would go on showing its action); frames are RGB at 320 x 240. Each
clip is also answered alone (`named_right_alone`: the same clips as plain videos), which tells what
the regions cost from what the model gets wrong anyway.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from actionrec.runtime.recognizer import Recognizer
from actionrec.video.encode import write_video
from actionrec.video.probe import VIDEO_EXTENSIONS

CELL = (320, 240)  # width, height of each clip in a built video
FPS = 25.0


@dataclass
class BuiltVideo:
    """A video made of clips: its path, its kind (mosaic or pair) and each cell's action and box."""

    path: Path
    kind: str
    cells: list[tuple[str, tuple[int, int, int, int]]]
    clips: list[Path]


def clip_group(path: Path) -> int | None:
    """The group of a UCF101-named clip (`v_Class_g08_c01.avi` -> 8); None for another name."""
    found = re.search(r"_g(\d+)_c\d+", path.stem)
    return int(found[1]) if found else None


def held_out_clips(root: Path, labels: Sequence[str], groups: set[int]) -> dict[str, list[Path]]:
    """Each label's clips (in `root/<label>/`) of the given groups, sorted."""
    clips = {label: sorted(path for path in (root / label).glob("*") if path.suffix.lower() in VIDEO_EXTENSIONS
                           and clip_group(path) in groups) for label in labels if (root / label).is_dir()}
    return {label: paths for label, paths in clips.items() if paths}


def _frames(path: Path) -> np.ndarray:
    """Every frame of `path`, RGB, at CELL's size."""
    with av.open(str(path)) as container:
        return np.stack([frame.reformat(width=CELL[0], height=CELL[1], format="rgb24", interpolation="AREA")
                         .to_ndarray() for frame in container.decode(video=0)])


def _build(paths: list[Path], columns: int, out: Path) -> None:
    """The clips in `paths` side by side, `columns` to a row, as long as the longest (the others looped)."""
    clips = [_frames(path) for path in paths]
    length = max(len(clip) for clip in clips)
    looped = [np.take(clip, np.arange(length) % len(clip), axis=0) for clip in clips]
    rows = [np.concatenate(looped[start : start + columns], axis=2) for start in range(0, len(clips), columns)]
    write_video(np.concatenate(rows, axis=1), out, FPS)


def build_videos(clips: dict[str, list[Path]], out: Path, mosaics: int, pairs: int) -> list[BuiltVideo]:
    """`mosaics` 2 x 2 mosaics and `pairs` side-by-side pairs of clips of different actions, written to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    turn: dict[str, int] = defaultdict(int)

    def next_clip(label: str) -> Path:
        turn[label] += 1
        return clips[label][(turn[label] - 1) % len(clips[label])]

    built = []
    for kind, count, size, columns in (("mosaic", mosaics, 4, 2), ("pair", pairs, 2, 2)):
        combos = list(itertools.combinations(sorted(clips), size))
        for number in range(count):
            labels = list(combos[number % len(combos)])
            paths = [next_clip(label) for label in labels]
            path = out / f"{kind}{number:02d}.mp4"
            _build(paths, columns, path)
            boxes = [((i % columns) * CELL[0], (i // columns) * CELL[1], *CELL) for i in range(size)]
            built.append(BuiltVideo(path, kind, list(zip(labels, boxes)), paths))
    return built


def _cell_of(box: Sequence[float], cells: list[tuple[str, tuple[int, int, int, int]]]) -> str | None:
    """The action of the cell holding `box`'s centre."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return next((label for label, (x, y, w, h) in cells if x <= cx < x + w and y <= cy < y + h), None)


def measure(recognizer: Recognizer, built: list[BuiltVideo], people: bool = True) -> dict:
    """How often each source names its cells right on the built videos (see the module's docstring)."""
    grid = {"mosaic": "grid:2x2", "pair": "grid:2x1"}
    right: dict[str, list[bool]] = {"mosaic": [], "pair": []}
    alone: dict[str, list[bool]] = {"mosaic": [], "pair": []}
    answers: dict[Path, str] = {}
    whole: list[str] = []
    tracks: list[bool] = []
    found: list[bool] = []
    detect_ms, detected_frames = 0.0, 0
    for video in built:
        answer = recognizer.predict(video.path, regions=grid[video.kind])
        assert answer.regions is not None
        right[video.kind] += [region.action == label for region, (label, _) in zip(answer.regions, video.cells)]
        for clip, (label, _) in zip(video.clips, video.cells):
            answers[clip] = answers.get(clip) or recognizer.predict(clip).action
            alone[video.kind].append(answers[clip] == label)
        if video.kind != "mosaic" or not people:
            continue
        whole.append(answer.action)
        seen = recognizer.predict(video.path, regions="people")
        detect_ms += seen.timings_ms.get("detect", 0.0)
        detected_frames += len(seen.video.frames_used)
        cells_with = {_cell_of(region.box, video.cells) for region in seen.regions or []}
        found += [label in cells_with for label, _ in video.cells]
        tracks += [region.action == _cell_of(region.box, video.cells) for region in seen.regions or []]
    result = {kind: {"videos": len(values) // (4 if kind == "mosaic" else 2), "regions": len(values),
                     "named_right": round(float(np.mean(values)), 4) if values else None,
                     "named_right_alone": round(float(np.mean(alone[kind])), 4) if values else None}
              for kind, values in right.items()}
    if people and found:
        rate = round(detected_frames / (detect_ms / 1000), 2) if detect_ms else None
        result["people"] = {"cells": len(found), "cells_with_a_track": round(float(np.mean(found)), 4),
                            "tracks": len(tracks),
                            "tracks_named_right": round(float(np.mean(tracks)), 4) if tracks else None,
                            "detector_frames_per_s": rate}
    return result
