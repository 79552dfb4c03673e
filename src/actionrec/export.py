"""Writing a model to ONNX: one graph from uint8 frames to class probabilities, carrying its card.

`export_model` writes the graph with the `ModelCard` as metadata and refuses to write anything
if ONNX Runtime does not reproduce PyTorch on random frames. `to_onnx` is the one place that
calls the exporter, also used for the feature extractor that training runs in ONNX Runtime.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from actionrec.card import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelCard
from actionrec.errors import ExportError
from actionrec.files import atomic_output
from actionrec.model import ActionModel, Probabilities

DEFAULT_OPSET = 17


def export_model(model: ActionModel, card: ModelCard, out: str | Path, *, opset: int = DEFAULT_OPSET,
                 tolerance: float = 1e-4) -> Path:
    """Write `model` as ONNX with `card`, then check ONNX Runtime agrees with PyTorch.

    On disagreement nothing is written and `ExportError` is raised.
    """
    import onnx

    frames, size = card.num_frames, card.image_size
    wrapped = Probabilities(model).eval()
    example = torch.randint(0, 256, (2, frames, size, size, 3), dtype=torch.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        to_onnx(wrapped, example, tmp, INPUT_NAME, OUTPUT_NAME, {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset=opset)
        graph = onnx.load(str(tmp))
        del graph.metadata_props[:]
        entry = graph.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, card.to_json()
        graph.doc_string = f"actionrec {card.name}: {len(card.labels)} actions from {frames} frames"
        onnx.save(graph, str(tmp))
        check_parity(wrapped, tmp, frames, size, tolerance)  # raises, and nothing is written
    return out


def to_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str,
            dynamic_axes: dict, opset: int = DEFAULT_OPSET) -> None:
    """torch.onnx.export with the TorchScript exporter, which writes nn.LSTM as one ONNX LSTM op."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice and LSTM batch-size notes
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)


def check_parity(wrapped: torch.nn.Module, onnx_path: Path, frames: int, size: int, tolerance: float) -> float:
    """Compare PyTorch and ONNX Runtime on random frames at batch sizes 1 and 3."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch in (1, 3):
        x = rng.integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8)
        with torch.inference_mode():
            expected = wrapped(torch.from_numpy(x)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    if worst > tolerance:
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree by up to {worst:.2e} (tolerance {tolerance:.0e}); "
            f"the export is wrong and was not written."
        )
    return worst
