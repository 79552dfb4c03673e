"""People seen at a video's sampled moments, linked into tracks by how much their boxes overlap.

`link_tracks` takes each moment's detections (in time order) and joins each detection to the track
whose last box it overlaps most (IoU at least `LINK_IOU`, last seen at most `MAX_GAP` moments
before); detections left over start tracks. A track seen at fewer than a quarter of the moments (and
at least 2) is dropped as a passing false detection; at most MAX_REGIONS tracks are kept, the most
often seen. Pure NumPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from actionrec.runtime.detectors import iou
from actionrec.video.regions import MAX_REGIONS, PixelBox

LINK_IOU = 0.3
MAX_GAP = 3  # moments a track may go unseen and still be joined


@dataclass
class Track:
    """One person over the sampled moments: `seen` maps a moment to (its detection's index at that
    moment, its box)."""

    seen: dict[int, tuple[int, PixelBox]] = field(default_factory=dict)

    @property
    def last(self) -> int:
        return max(self.seen)

    def nearest(self, moment: int) -> int:
        """The moment closest to `moment` at which the track was seen (the earlier where two are)."""
        return min(self.seen, key=lambda seen: (abs(seen - moment), seen))

    def middle_box(self, moments: int) -> PixelBox:
        """Its box at the middle moment, or at the seen moment nearest to it."""
        return self.seen[self.nearest((moments - 1) // 2)][1]


def min_track_moments(moments: int) -> int:
    """How many moments a track must be seen at to be kept."""
    return max(2, math.ceil(moments / 4)) if moments > 1 else 1


def link_tracks(detections: list[list[PixelBox]], cap: int = MAX_REGIONS) -> tuple[list[Track], int]:
    """Tracks from each moment's boxes (at most `cap`, the most often seen), and how many tracks were
    dropped (too short, or over the cap)."""
    live: list[Track] = []
    finished: list[Track] = []
    for moment, boxes in enumerate(detections):
        for track in [t for t in live if moment - t.last > MAX_GAP + 1]:
            live.remove(track)
            finished.append(track)
        pairs = sorted(((iou(track.seen[track.last][1], box), t, d) for t, track in enumerate(live)
                        for d, box in enumerate(boxes)), reverse=True)
        taken_tracks: set[int] = set()
        taken_boxes: set[int] = set()
        for overlap, t, d in pairs:
            if overlap < LINK_IOU:
                break
            if t in taken_tracks or d in taken_boxes:
                continue
            live[t].seen[moment] = (d, boxes[d])
            taken_tracks.add(t)
            taken_boxes.add(d)
        live += [Track({moment: (d, box)}) for d, box in enumerate(boxes) if d not in taken_boxes]
    tracks = finished + live
    kept = [track for track in tracks if len(track.seen) >= min_track_moments(len(detections))]
    kept = sorted(kept, key=lambda track: -len(track.seen))[: min(cap, MAX_REGIONS)]
    kept.sort(key=lambda track: (min(track.seen), track.middle_box(len(detections))[0]))
    return kept, len(tracks) - len(kept)
