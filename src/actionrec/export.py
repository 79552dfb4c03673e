"""Export a trained run to one ONNX graph that carries everything a server needs in its metadata."""

from __future__ import annotations

import json
import os
import platform
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from actionrec import __version__
from actionrec.cache import atomic_output
from actionrec.errors import ActionrecError
from actionrec.model import ActionModel, Probabilities
from actionrec.recognizer import METADATA_KEY
from actionrec.video import IMAGENET_MEAN, IMAGENET_STD, SAMPLING_RULE

METADATA_FORMAT = 1
INPUT_NAME, OUTPUT_NAME = "frames", "probabilities"


class ExportError(ActionrecError):
    pass


def model_metadata(run_dir: Path, saved: dict, history_best: dict | None) -> dict:
    spec, train = saved["spec"], saved["train"]
    return {
        "format": METADATA_FORMAT,
        "name": train.get("name") or Path(run_dir).resolve().name,
        "version": datetime.now(timezone.utc).strftime("%Y%m%d.%H%M%S"),
        "labels": saved["labels"],
        "num_frames": spec["num_frames"],
        "image_size": spec["image_size"],
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": ["batch", spec["num_frames"], spec["image_size"], spec["image_size"], 3],
            "channels": "RGB",
        },
        "output": {"name": OUTPUT_NAME, "meaning": "class probabilities (softmax), in the order of labels"},
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 255, "in_graph": True},
        "sampling": SAMPLING_RULE,
        "model": {**saved["model"], "backbone": "mobilenet_v2", "backbone_weights": saved["backbone_id"]},
        "dataset": saved.get("dataset"),
        "validation": history_best,
        "versions": {
            "actionrec": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def export_onnx(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, opset: int = 17,
                tolerance: float = 1e-4) -> Path:
    """Write `run_dir/model.onnx` (or `out`) from a trained run, checked against PyTorch."""
    from actionrec.train import load_run

    run_dir = Path(run_dir)
    model, _, saved = load_run(run_dir)
    history = json.loads((run_dir / "history.json").read_text()) if (run_dir / "history.json").exists() else []
    best = max(history, key=lambda row: row["val_acc"], default=None)
    metadata = model_metadata(run_dir, saved, best)
    return export_model(model, metadata, Path(out) if out else run_dir / "model.onnx", opset=opset, tolerance=tolerance)


def export_model(model: ActionModel, metadata: dict, out: Path, *, opset: int = 17, tolerance: float = 1e-4) -> Path:
    """Write `model` as ONNX with `metadata`, then check ONNX Runtime agrees with PyTorch.

    On disagreement nothing is written and `ExportError` is raised.
    """
    import onnx

    frames, size = metadata["num_frames"], metadata["image_size"]
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
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
        graph.doc_string = f"actionrec {metadata['name']}: {len(metadata['labels'])} actions from {frames} frames"
        onnx.save(graph, str(tmp))
        check_parity(wrapped, tmp, frames, size, tolerance)  # raises, and nothing is written
    return out


def to_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str,
            dynamic_axes: dict, opset: int = 17) -> None:
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
