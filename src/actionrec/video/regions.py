"""Regions of a video, each answered as a video of its own: the `--regions` SPEC, its boxes in a
frame's pixels, and each region's crop made model-ready by the one preprocessing rule.

A SPEC is one of:

    grid:CxR                 C columns by R rows of equal cells (grid:2x2)
    x,y,w,h;x,y,w,h...       fixed zones, in pixels or, where all four numbers are at most 1, as
                             fractions of the frame (0.5,0,0.5,1 is the right half)
    people                   people found by the built-in detector (OpenCV's HOG, the `people`
                             extra), linked into tracks over the sampled moments
    detector:PATH.onnx       people found by a detector of your own (Ultralytics YOLO's output layout)

`parse_regions` checks a SPEC completely before any video is opened; boxes given in pixels are
checked against the frame as it is displayed (rotation applied) once its size is known. At most
`MAX_REGIONS` regions. Boxes are (x, y, w, h) in the displayed frame's pixels, x and y its top-left
corner. Each region's crop goes through `model_square`, as whole frames do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from actionrec.errors import RegionsError

MAX_REGIONS = 16  # regions per video: cells, zones or tracks
MIN_BOX_PIXELS = 16  # the shortest side a region may have, in the displayed frame's pixels

SourceKind = Literal["grid", "boxes", "people", "detector"]
PixelBox = tuple[int, int, int, int]  # x, y, w, h in the displayed frame's pixels
SPEC_HELP = ("grid:CxR (e.g. grid:2x2), boxes x,y,w,h;x,y,w,h in pixels or fractions of the frame "
             "(e.g. 0,0,0.5,1), people, or detector:PATH.onnx")

_NUMBER = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*"
_BOX = re.compile(",".join([_NUMBER] * 4))


@dataclass(frozen=True)
class Box:
    """A fixed zone as given: in pixels, or as fractions of the frame's width and height."""

    x: float
    y: float
    w: float
    h: float
    fractions: bool

    def in_pixels(self, width: int, height: int) -> PixelBox:
        if not self.fractions:
            return round(self.x), round(self.y), round(self.w), round(self.h)
        x0, y0 = round(self.x * width), round(self.y * height)
        return x0, y0, round((self.x + self.w) * width) - x0, round((self.y + self.h) * height) - y0


@dataclass(frozen=True)
class RegionSpec:
    """A parsed SPEC: where the regions come from (`source`) and what fixes them."""

    source: SourceKind
    text: str
    columns: int = 0
    rows: int = 0
    boxes: tuple[Box, ...] = ()
    detector: str | None = None  # the ONNX file of `detector:`

    @property
    def fixed(self) -> bool:
        """Whether the regions are known before the video is seen (a grid, zones)."""
        return self.source in ("grid", "boxes")

    def region_ids(self) -> list[str]:
        """The ids of a fixed SPEC's regions, in order: `rRcC` (1-based) for cells, `zoneN` for zones."""
        if self.source == "grid":
            return [f"r{row + 1}c{col + 1}" for row in range(self.rows) for col in range(self.columns)]
        return [f"zone{number + 1}" for number in range(len(self.boxes))]

    def pixel_boxes(self, width: int, height: int) -> list[PixelBox]:
        """A fixed SPEC's boxes in a `width` x `height` frame (as displayed), in `region_ids` order;
        RegionsError where one lies outside the frame or is under MIN_BOX_PIXELS a side."""
        if self.source == "grid":
            xs = np.linspace(0, width, self.columns + 1).round().astype(int)
            ys = np.linspace(0, height, self.rows + 1).round().astype(int)
            boxes = [(int(xs[c]), int(ys[r]), int(xs[c + 1] - xs[c]), int(ys[r + 1] - ys[r]))
                     for r in range(self.rows) for c in range(self.columns)]
        else:
            boxes = [box.in_pixels(width, height) for box in self.boxes]
        for region, (x, y, w, h) in zip(self.region_ids(), boxes):
            if x + w > width or y + h > height:
                raise RegionsError(f"regions {self.text!r}: {region} ({x},{y},{w},{h}) reaches outside the "
                                   f"{width}x{height} frame (as displayed). Give boxes inside it, or as "
                                   "fractions of the frame.")
            if min(w, h) < MIN_BOX_PIXELS:
                raise RegionsError(f"regions {self.text!r}: {region} is {w}x{h} pixels in this {width}x{height} "
                                   f"video; a region needs at least {MIN_BOX_PIXELS} pixels a side.")
        return boxes


def parse_regions(text: str) -> RegionSpec:
    """The RegionSpec `text` says; RegionsError naming what is wrong where it does not parse."""
    spec = text.strip()
    lowered = spec.lower()
    if lowered == "people":
        return RegionSpec("people", spec)
    if lowered.startswith("detector:"):
        path = spec[len("detector:"):].strip()
        if not path:
            raise RegionsError(f"regions {text!r}: name the detector's ONNX file, e.g. detector:yolov8n.onnx.")
        return RegionSpec("detector", spec, detector=path)
    if lowered.startswith("grid:"):
        return _grid(spec)
    return _boxes(spec.removeprefix("boxes:"), spec)


def _grid(spec: str) -> RegionSpec:
    match = re.fullmatch(r"grid:\s*(\d+)\s*[xX]\s*(\d+)\s*", spec, flags=re.IGNORECASE)
    if match is None:
        raise RegionsError(f"regions {spec!r}: a grid is grid:CxR, columns by rows, e.g. grid:2x2.")
    columns, rows = int(match[1]), int(match[2])
    if columns < 1 or rows < 1:
        raise RegionsError(f"regions {spec!r}: a grid needs at least one column and one row.")
    if columns * rows > MAX_REGIONS:
        raise RegionsError(f"regions {spec!r}: {columns * rows} cells, more than the {MAX_REGIONS} regions a "
                           "video may have.")
    return RegionSpec("grid", spec, columns=columns, rows=rows)


def _boxes(text: str, spec: str) -> RegionSpec:
    parts = [part for part in text.split(";") if part.strip()]
    if not parts:
        raise RegionsError(f"regions {spec!r}: empty. Give {SPEC_HELP}.")
    if len(parts) > MAX_REGIONS:
        raise RegionsError(f"regions {spec!r}: {len(parts)} boxes, more than the {MAX_REGIONS} regions a "
                           "video may have.")
    boxes = []
    for number, part in enumerate(parts, start=1):
        match = _BOX.fullmatch(part)
        if match is None:
            raise RegionsError(f"regions {spec!r}: box {number} ({part.strip()!r}) is not x,y,w,h. Give "
                               f"{SPEC_HELP}.")
        x, y, w, h = (float(value) for value in match.groups())
        if w <= 0 or h <= 0:
            raise RegionsError(f"regions {spec!r}: box {number} ({part.strip()}) has no size: its width and "
                               "height must be more than 0.")
        fractions = max(x, y, w, h) <= 1
        if fractions and (x + w > 1 + 1e-9 or y + h > 1 + 1e-9):
            raise RegionsError(f"regions {spec!r}: box {number} ({part.strip()}) reaches outside the frame: "
                               "as fractions, x + w and y + h are at most 1.")
        boxes.append(Box(x, y, w, h, fractions))
    return RegionSpec("boxes", spec, boxes=tuple(boxes))


# --------------------------------------------------------------------------- pixels


def displayed_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The whole frame as displayed: (height, width, 3) uint8 RGB, its rotation applied."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns)) if quarter_turns else rgb


def crop_input(rgb: np.ndarray, box: PixelBox, image_size: int) -> np.ndarray:
    """One region of a displayed frame, model-ready: the box cut out, then `model_square` (its
    shorter side resized to `image_size`, the centre square kept), as a whole frame is."""
    x, y, w, h = box
    crop = np.ascontiguousarray(rgb[y : y + h, x : x + w])
    return model_square(av.VideoFrame.from_ndarray(crop, format="rgb24"), image_size)


def square_box(box: PixelBox, width: int, height: int, context: float = 1.0) -> PixelBox:
    """The square around `box`'s centre whose side is its longer side times `context` (moved, or
    shrunk, to stay inside the `width` x `height` frame): what a person's box is cropped as, so that
    the centre square the model sees holds the whole person (and, with `context` over 1, what is
    around them) rather than the middle of a tall box."""
    x, y, w, h = box
    side = round(min(max(w, h) * context, width, height))
    left = min(max(0, round(x + w / 2 - side / 2)), width - side)
    top = min(max(0, round(y + h / 2 - side / 2)), height - side)
    return left, top, side, side


def model_square(frame: av.VideoFrame, image_size: int, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """The one preprocessing rule of a frame (or a region's crop), rotation aside: RGB, the shorter
    side resized to `image_size` with area interpolation, the centre square cropped. `reformatter`:
    one kept for a stream's frames (the same pixels, at about half the cost: a frame's own sets up
    FFmpeg's scaler, and its threads, for that frame alone)."""
    w, h = frame.width, frame.height
    scale = image_size / min(w, h)
    new_w, new_h = max(image_size, round(w * scale)), max(image_size, round(h * scale))
    if reformatter is None:
        rgb = frame.reformat(width=new_w, height=new_h, format="rgb24", interpolation="AREA").to_ndarray()
    else:
        rgb = reformatter.reformat(frame, width=new_w, height=new_h, format="rgb24", interpolation="AREA",
                                   threads=1).to_ndarray()
    top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
    return rgb[top : top + image_size, left : left + image_size]
