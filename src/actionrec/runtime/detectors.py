"""People in a frame, for `--regions people` and `--regions detector:PATH.onnx`: each detector takes
a displayed frame ((H, W, 3) uint8 RGB) and gives the people it finds as (box, score), box (x, y, w,
h) in that frame's pixels, the most confident first.

    HogPeople       OpenCV's built-in HOG people detector (the `people` extra: opencv-python-headless).
                    Offline, no file to download; finds upright, mostly whole people at least about
                    100 pixels tall (its window is 64 x 128), and misses people sitting, lying,
                    bent over, seen from above, or cut by the frame's edge.
    OnnxPeople      a detector file of your own in the output layout Ultralytics YOLO (v8 and later)
                    exports: one input (1, 3, H, W) float RGB in [0, 1], the frame letterboxed
                    (scaled to fit, padded with grey 114); one output (1, 4 + classes, N): for each
                    of N candidates its centre x, centre y, width and height in the input's pixels,
                    then a score per class; class 0 is a person (as in COCO).

`load_detector` checks a file before any video is read: a file that is not ONNX, or whose input or
output is not the layout above, is refused with a `RegionsError` that says what it has instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from actionrec.errors import DetectorUnavailableError, RegionsError
from actionrec.video.regions import MAX_REGIONS, PixelBox, RegionSpec

Detection = tuple[PixelBox, float]
Detector = Callable[[np.ndarray], list[Detection]]

PEOPLE_EXTRA = "pip install 'actionrec[people]' (OpenCV's HOG people detector, opencv-python-headless)"
HOG_MAX_WIDTH = 640  # frames wider than this are scaled down for the HOG detector (its cost grows with the pixels)
HOG_WINDOW = (64, 128)  # the detector's window, width by height
HOG_MIN_WEIGHT = 0.5  # the SVM's score a detection needs
ONNX_MIN_SCORE = 0.35  # a person's class score a detection needs
NMS_IOU = 0.45  # overlapping detections of one person: the best is kept


def iou(a: PixelBox | np.ndarray, b: PixelBox | np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    overlap_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = overlap_w * overlap_h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_IOU) -> list[int]:
    """Which of `boxes` ((n, 4) x, y, w, h) to keep, best score first: each box overlapping a better
    kept one by more than `threshold` IoU is dropped."""
    kept: list[int] = []
    for index in np.argsort(-scores):
        if all(iou(boxes[index], boxes[other]) <= threshold for other in kept):
            kept.append(int(index))
    return kept


def _clipped(box: np.ndarray, width: int, height: int) -> PixelBox:
    x0, y0 = max(0, round(float(box[0]))), max(0, round(float(box[1])))
    x1, y1 = min(width, round(float(box[0] + box[2]))), min(height, round(float(box[1] + box[3])))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


class HogPeople:
    """OpenCV's HOG + linear SVM people detector (Dalal and Triggs), with its built-in weights."""

    def __init__(self) -> None:
        try:
            import cv2
        except ImportError:
            raise DetectorUnavailableError(f"regions 'people' needs OpenCV, which is not installed: {PEOPLE_EXTRA}; "
                                           "or bring a detector file (detector:PATH.onnx).") from None
        self.cv2 = cv2
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        # Wide frames are scaled down (the cost grows with the pixels); frames smaller than twice its
        # window scaled up (OpenCV crashes on an image smaller than the window).
        scale = min(1.0, HOG_MAX_WIDTH / width)
        scale = max(scale, HOG_WINDOW[0] * 2 / width, HOG_WINDOW[1] * 2 / height)
        interpolation = self.cv2.INTER_AREA if scale < 1 else self.cv2.INTER_LINEAR
        image = rgb if scale == 1.0 else self.cv2.resize(rgb, (round(width * scale), round(height * scale)),
                                                         interpolation=interpolation)
        found, weights = self.hog.detectMultiScale(np.ascontiguousarray(image[:, :, ::-1]), winStride=(8, 8),
                                                   padding=(8, 8), scale=1.05)
        if len(found) == 0:
            return []
        boxes = np.asarray(found, dtype=np.float64) / scale
        scores = np.asarray(weights, dtype=np.float64).reshape(-1)
        keep = [i for i in non_max_suppression(boxes, scores) if scores[i] >= HOG_MIN_WEIGHT]
        people = [(_clipped(boxes[i], width, height), round(float(scores[i]), 4)) for i in keep]
        return [(box, score) for box, score in people if box[2] > 1 and box[3] > 1][:MAX_REGIONS]


class OnnxPeople:
    """A detector file in Ultralytics YOLO's output layout (see the module's docstring)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        what = f"detector file {self.path}"
        if not self.path.is_file():
            raise RegionsError(f"{what}: no such file. Give the path of an ONNX person detector (detector:PATH.onnx).")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # not ONNX, damaged, an operator ONNX Runtime lacks
            raise RegionsError(f"{what}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]}). "
                               "Export the detector to ONNX (e.g. `yolo export model=yolov8n.pt format=onnx`).") \
                from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        if len(shape) != 4 or shape[1] != 3:
            raise RegionsError(f"{what}: takes {[tuple(i.shape) for i in inputs]}, not one (1, 3, H, W) image: it "
                               "is not a detector of the documented layout (Ultralytics YOLO's).")
        self.input = inputs[0].name
        self.height = shape[2] if isinstance(shape[2], int) else 640
        self.width = shape[3] if isinstance(shape[3], int) else 640
        self.output = outputs[0].name
        try:
            answer = self.session.run([self.output], {self.input: np.zeros((1, 3, self.height, self.width),
                                                                            np.float32)})[0]
        except Exception as exc:  # a wrong input type, an operator failing: not a detector of the layout
            raise RegionsError(f"{what}: fails on a blank {self.width}x{self.height} image "
                               f"({str(exc).splitlines()[0][:200]}): it is not a detector of the documented "
                               "layout (Ultralytics YOLO's).") from None
        if answer.ndim != 3 or answer.shape[0] != 1 or answer.shape[1] < 5:
            raise RegionsError(f"{what}: gives {tuple(answer.shape)}, not (1, 4 + classes, N): it is not a detector "
                               "of the documented layout (Ultralytics YOLO's: centre x, centre y, width, height, "
                               "then a score per class, class 0 a person).")

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        scale = min(self.width / width, self.height / height)
        inner_w, inner_h = max(1, round(width * scale)), max(1, round(height * scale))
        left, top = (self.width - inner_w) // 2, (self.height - inner_h) // 2
        canvas = np.full((self.height, self.width, 3), 114, np.uint8)
        canvas[top : top + inner_h, left : left + inner_w] = _resized(rgb, inner_w, inner_h)
        batch = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        raw = self.session.run([self.output], {self.input: batch})[0][0]  # (4 + classes, N)
        scores = raw[4]
        chosen = np.flatnonzero(scores >= ONNX_MIN_SCORE)
        if len(chosen) == 0:
            return []
        cx, cy, w, h = raw[:4, chosen]
        boxes = np.stack([(cx - w / 2 - left) / scale, (cy - h / 2 - top) / scale, w / scale, h / scale], axis=1)
        keep = non_max_suppression(boxes, scores[chosen])
        found = [(_clipped(boxes[i], width, height), round(float(scores[chosen][i]), 4)) for i in keep]
        return [(box, score) for box, score in found if box[2] > 1 and box[3] > 1][:MAX_REGIONS]


def _resized(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """`rgb` scaled to width x height (area interpolation, as frames are for the model)."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()


def load_detector(spec: RegionSpec) -> Detector | None:
    """The detector a SPEC needs (None for a grid or zones), checked before any video is read."""
    if spec.source == "people":
        return HogPeople()
    if spec.source == "detector":
        assert spec.detector is not None
        return OnnxPeople(spec.detector)
    return None
