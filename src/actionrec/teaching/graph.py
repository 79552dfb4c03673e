"""The graph of a taught model: its base's graph up to the frame features, then the taught head on
them, written with the `onnx` package and checked in ONNX Runtime against the head's NumPy
arithmetic before it is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from actionrec.errors import ModelFileError
from actionrec.files import atomic_output
from actionrec.modelfile.card import (
    FEATURES_INPUT,
    FEATURES_OUTPUT,
    INPUT_NAME,
    MAPS_OUTPUT,
    OUTPUT_NAME,
    WINDOW_OUTPUT,
    ModelCard,
    write_card,
)
from actionrec.teaching.head import LinearHead, pool


def write_taught_graph(base_path: Path, head: LinearHead, card: ModelCard, out: Path) -> None:
    """The base's graph up to the frame features, then `head` on them (whole clips) and on the
    `features` input (windows): the same inputs and outputs as every exported model."""
    import onnx

    try:
        model = onnx.load(str(base_path))
    except Exception as exc:
        raise ModelFileError(f"{base_path}: cannot read this model file ({exc}).") from None
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    axes_as_input = opset >= 18
    nodes = _encoder_nodes(graph) + _head_nodes(FEATURES_OUTPUT, OUTPUT_NAME, "taught_clip", axes_as_input) + \
        _head_nodes(FEATURES_INPUT, WINDOW_OUTPUT, "taught_window", axes_as_input)
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used or init.name == FEATURES_INPUT]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + _head_initializers(head, axes_as_input))
    del graph.value_info[:]
    _set_output_classes(graph, len(card.labels))
    write_card(model, card)
    model.doc_string = f"actionrec {card.name}: {len(card.labels)} actions taught on {card.model.get('base', 'a base')}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        onnx.save(model, str(tmp))
        _check_written(tmp, head)


def _encoder_nodes(graph) -> list:
    """The nodes of `graph` that the frame features (and, where the base gives them, its frame maps,
    which explanations read) are computed from, in the graph's order."""
    producers = {output: node for node in graph.node for output in node.output}
    needed, stack = set(), [FEATURES_OUTPUT, MAPS_OUTPUT]
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(node.input)
    return [node for node in graph.node if id(node) in needed]


def _head_nodes(source: str, output: str, prefix: str, axes_as_input: bool) -> list:
    """The head on the (N, T, F) features `source`, as `actionrec.teaching.head.pool` and `LinearHead`
    compute it: their mean and standard deviation over time, side by side, divided by the mean's
    length, the linear layer and a softmax into `output`. From opset 18 on, reductions take their
    axes as inputs."""
    from onnx import helper

    def reduce(op: str, x: str, out: str, axis: str, keepdims: int) -> Any:
        axes = [f"{prefix}_axes" if axis == "time" else f"{prefix}_axes_last"]
        kwargs: dict[str, Any] = {} if axes_as_input else {"axes": [1 if axis == "time" else -1]}
        return helper.make_node(op, [x] + (axes if axes_as_input else []), [out], keepdims=keepdims, **kwargs)

    return [
        reduce("ReduceMean", source, f"{prefix}_mean_kept", "time", 1),
        reduce("ReduceMean", source, f"{prefix}_mean", "time", 0),
        helper.make_node("Sub", [source, f"{prefix}_mean_kept"], [f"{prefix}_centred"]),
        helper.make_node("Mul", [f"{prefix}_centred", f"{prefix}_centred"], [f"{prefix}_squared"]),
        reduce("ReduceMean", f"{prefix}_squared", f"{prefix}_variance", "time", 0),
        helper.make_node("Sqrt", [f"{prefix}_variance"], [f"{prefix}_std"]),
        reduce("ReduceL2", f"{prefix}_mean", f"{prefix}_norm", "last", 1),
        helper.make_node("Max", [f"{prefix}_norm", "taught_eps"], [f"{prefix}_norm_safe"]),
        helper.make_node("Concat", [f"{prefix}_mean", f"{prefix}_std"], [f"{prefix}_both"], axis=-1),
        helper.make_node("Div", [f"{prefix}_both", f"{prefix}_norm_safe"], [f"{prefix}_pooled"]),
        helper.make_node("Gemm", [f"{prefix}_pooled", "taught_weights", "taught_bias"], [f"{prefix}_logits"],
                         transB=1),
        helper.make_node("Softmax", [f"{prefix}_logits"], [output], axis=-1),
    ]


def _head_initializers(head: LinearHead, axes_as_input: bool) -> list:
    """The constants `_head_nodes` read: the head's weights and bias, and the reductions' axes."""
    from onnx import numpy_helper

    initializers = [numpy_helper.from_array(head.weights.astype(np.float32), "taught_weights"),
                    numpy_helper.from_array(head.bias.astype(np.float32), "taught_bias"),
                    numpy_helper.from_array(np.array([1e-12], np.float32), "taught_eps")]
    if axes_as_input:
        for prefix in ("taught_clip", "taught_window"):
            initializers += [numpy_helper.from_array(np.array([1], np.int64), f"{prefix}_axes"),
                             numpy_helper.from_array(np.array([-1], np.int64), f"{prefix}_axes_last")]
    return initializers


def _set_output_classes(graph, num_classes: int) -> None:
    """The class outputs declared as float, with `num_classes` columns."""
    from onnx import TensorProto

    for output in graph.output:
        if output.name in (OUTPUT_NAME, WINDOW_OUTPUT):
            dims = output.type.tensor_type.shape.dim
            if len(dims) == 2:
                dims[1].ClearField("dim_param")
                dims[1].dim_value = num_classes
            output.type.tensor_type.elem_type = TensorProto.FLOAT


def _check_written(path: Path, head: LinearHead) -> None:
    """The written graph's head must give what NumPy's does (else nothing is written)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelFileError(f"the taught model does not load in ONNX Runtime ({exc}); nothing was written") from None
    features_input = next(i for i in session.get_inputs() + session.get_overridable_initializers()
                          if i.name == FEATURES_INPUT)
    frames_input = next(i for i in session.get_inputs() if i.name == INPUT_NAME)
    length = features_input.shape[1] if isinstance(features_input.shape[1], int) else 4
    width = head.weights.shape[1] // 2  # the head reads the mean and the spread of each feature
    features = np.random.default_rng(0).normal(size=(3, length, width)).astype(np.float32)
    side = frames_input.shape[2] if isinstance(frames_input.shape[2], int) else 32
    got = session.run([WINDOW_OUTPUT], {INPUT_NAME: np.zeros((1, 1, side, side, 3), np.uint8),
                                        FEATURES_INPUT: features})[0]
    expected = head.probabilities(pool(features))
    if not np.allclose(got, expected, atol=1e-4):
        raise ModelFileError("the taught model's graph disagrees with its head; nothing was written")
