"""An explanation drawn as pictures (`actionrec predict --explain --explain-out DIR`), with NumPy and
PyAV alone (PNG written by hand: no imaging package on the serving path).

    NAME.moments.png  the sampled frames as a strip, a bar under each: up (green) where the moment is
                      evidence for the answer, down (red) against, its height the weight; the
                      strongest moment framed in yellow
    NAME.map.png      the strongest moment's whole frame with the map laid over it (warm where the
                      evidence lies); the part outside the square the model sees dimmed
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import av
import numpy as np

from actionrec.files import atomic_output
from actionrec.runtime.answer import Explanation, Prediction

THUMB_HEIGHT = 96
BAR_HEIGHT = 48
GAP = 4
FRAME_SIDE = 480  # the longer side of the map's picture


def write_png(path: Path, image: np.ndarray) -> None:
    """(H, W, 3) uint8 RGB to a PNG file, written beside `path` and renamed into place."""
    height, width = image.shape[:2]
    raw = b"".join(b"\x00" + np.ascontiguousarray(image[row]).tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def read_whole_frames(path: Path | str, indices: list[int], longer_side: int) -> dict[int, np.ndarray]:
    """The frames at `indices` (in presentation order) whole, as the video shows them (rotation
    applied), their longer side `longer_side` pixels."""
    wanted, frames = set(indices), {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                turns = round((frame.rotation or 0) / 90) % 4
                w, h = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
                scale = longer_side / max(w, h)
                size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
                rgb = frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray()
                frames[index] = np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb
            if index >= max(wanted):
                break
    return frames


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize (pictures for people, not for the model)."""
    rows = np.minimum((np.arange(height) * image.shape[0] / height).astype(int), image.shape[0] - 1)
    cols = np.minimum((np.arange(width) * image.shape[1] / width).astype(int), image.shape[1] - 1)
    return image[rows][:, cols]


def moments_strip(explanation: Explanation, frames: dict[int, np.ndarray]) -> np.ndarray:
    """The sampled frames side by side, each with its weight as a bar beneath."""
    moments = explanation.moments
    sample = frames[moments[0].frame]
    thumb_w = max(1, round(sample.shape[1] * THUMB_HEIGHT / sample.shape[0]))
    largest = max(abs(m.weight) for m in moments) or 1.0
    best = int(np.argmax([m.weight for m in moments]))
    strip = np.full((THUMB_HEIGHT + BAR_HEIGHT + 2 * GAP, len(moments) * (thumb_w + GAP) + GAP, 3), 255, np.uint8)
    middle = THUMB_HEIGHT + GAP + BAR_HEIGHT // 2
    strip[middle, :] = 160
    for n, moment in enumerate(moments):
        left = GAP + n * (thumb_w + GAP)
        strip[GAP:GAP + THUMB_HEIGHT, left:left + thumb_w] = _resize(frames[moment.frame], THUMB_HEIGHT, thumb_w)
        if n == best and moment.weight > 0:
            strip[GAP - 2:GAP, left:left + thumb_w] = strip[GAP + THUMB_HEIGHT:GAP + THUMB_HEIGHT + 2,
                                                            left:left + thumb_w] = (250, 200, 0)
        height = round(abs(moment.weight) / largest * (BAR_HEIGHT // 2 - 1))
        bar = slice(middle - height, middle) if moment.weight > 0 else slice(middle + 1, middle + 1 + height)
        strip[bar, left + thumb_w // 4:left + 3 * thumb_w // 4] = (40, 170, 60) if moment.weight > 0 else (200, 50, 40)
    return strip


def map_overlay(explanation: Explanation, frame: np.ndarray) -> np.ndarray:
    """`frame` (whole, as shown) with the map's positive weights laid over it, warm where the evidence
    lies, and the part outside the model's square dimmed."""
    assert explanation.map is not None
    height, width = frame.shape[:2]
    weights = np.clip(np.array(explanation.map.weights, dtype=np.float64), 0, None)
    heat = _resize(weights / (weights.max() or 1.0), height, width)[..., None]
    warm = np.array([255.0, 60.0, 0.0])
    image = frame.astype(np.float64) * (1 - 0.6 * heat) + warm * 0.6 * heat
    left, top, crop_w, crop_h = explanation.map.crop
    x0, y0 = round(left * width), round(top * height)
    x1, y1 = min(width, x0 + round(crop_w * width)), min(height, y0 + round(crop_h * height))
    seen = np.zeros((height, width, 1), bool)
    seen[y0:y1, x0:x1] = True
    return np.where(seen, image, image * 0.45).clip(0, 255).astype(np.uint8)


def draw_explanation(video: Path | str, prediction: Prediction, folder: Path) -> list[Path]:
    """The prediction's explanation drawn into `folder` as NAME.moments.png and, where it has a map,
    NAME.map.png (NAME: the video's file name without its suffix). Returns the paths written."""
    explanation = prediction.explanation
    if explanation is None or not explanation.moments:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    best = max(explanation.moments, key=lambda m: m.weight)
    frames = read_whole_frames(video, [m.frame for m in explanation.moments], FRAME_SIDE)
    if any(m.frame not in frames for m in explanation.moments):
        raise OSError("the video's frames could not all be read again")
    written = [folder / f"{Path(str(video)).stem}.moments.png"]
    write_png(written[0], moments_strip(explanation, frames))
    if explanation.map is not None:
        written.append(folder / f"{Path(str(video)).stem}.map.png")
        write_png(written[1], map_overlay(explanation, frames[best.frame]))
    return written
