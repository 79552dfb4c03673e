"""Material for the tests of regions: videos made of coloured quarters (a mosaic whose cells each
show one colour), a model taught those colours (its base needs torch), and small ONNX person
detectors in Ultralytics YOLO's output layout that find people where they are told to (the onnx
package)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from actionrec.video.encode import write_video

QUARTER_COLOURS = {"red": (200, 40, 40), "blue": (40, 60, 200), "green": (40, 190, 60), "yellow": (210, 200, 40)}


def colour_mosaic(path: Path, colours: Sequence[Sequence[str]], *, cell: tuple[int, int] = (64, 48),
                  frames: int = 30, seed: int = 0) -> Path:
    """A video whose cells (rows of `colours` names, each cell `cell` = (width, height) pixels) each show
    one colour of QUARTER_COLOURS with per-pixel noise, as `actionrec.testing.media.colour_clip`'s."""
    rng = np.random.default_rng(seed)
    width, height = cell
    rows = [np.concatenate([np.broadcast_to(np.array(QUARTER_COLOURS[name], np.int16), (frames, height, width, 3))
                            for name in row], axis=2) for row in colours]
    video = np.concatenate(rows, axis=1) + rng.integers(-30, 30, (frames, height * len(rows),
                                                                   width * len(colours[0]), 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(np.clip(video, 0, 255).astype(np.uint8), path, 15.0)
    return path


def taught_colours_model(root: Path) -> Path:
    """A model taught the four colours of QUARTER_COLOURS (three clips each) on a small untrained base:
    a model that names each colour, made in seconds (needs the train extra for the base)."""
    from actionrec.teaching.flow import teach
    from actionrec.testing import make_untrained_model

    base = make_untrained_model(root / "base.onnx", fitted_batch_norm=True)
    examples = {name: [colour_mosaic(root / "examples" / name / f"{i}.mp4", [[name]], seed=i) for i in range(3)]
                for name in QUARTER_COLOURS}
    return teach(base, examples, root / "colours.onnx", name="colours").path


def detector_file(path: Path, people: Sequence[tuple[float, float, float, float, float]], *, size: int = 64,
                  classes: int = 2, output_shape: Sequence[int] | None = None) -> Path:
    """An ONNX detector in Ultralytics YOLO's layout ((1, 3, size, size) in, (1, 4 + classes, N) out) that
    finds `people`, each (cx, cy, w, h, score) in the input's pixels, whatever the image (plus one
    candidate of class 1, not a person, that must be ignored). `output_shape`: reshape the output
    to this instead, to make a file that is not of the layout."""
    import onnx
    from onnx import TensorProto, helper

    rows = [[cx, cy, w, h, score, 0.0] for cx, cy, w, h, score in people] + [[size / 2, size / 2, 8, 8, 0.0, 0.9]]
    table = np.zeros((4 + classes, len(rows)), np.float32)
    for n, row in enumerate(rows):
        table[:4, n], table[4, n], table[5, n] = row[:4], row[4], row[5]
    constant = helper.make_tensor("candidates", TensorProto.FLOAT, (1, *table.shape), table.ravel().tolist())
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["candidates", "nothing"], ["raw"]),
    ]
    zero = helper.make_tensor("zero", TensorProto.FLOAT, (), [0.0])
    out_shape: list[int] = [1, *table.shape]
    if output_shape is not None:
        shape = helper.make_tensor("shape", TensorProto.INT64, (len(output_shape),), list(output_shape))
        nodes.append(helper.make_node("Reshape", ["raw", "shape"], ["output0"]))
        initializers = [constant, zero, shape]
        out_shape = list(output_shape)
    else:
        nodes.append(helper.make_node("Identity", ["raw"], ["output0"]))
        initializers = [constant, zero]
    graph = helper.make_graph(nodes, "people", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                               [1, 3, size, size])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
