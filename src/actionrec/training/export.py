"""Writing a model to ONNX: one file that carries its card and runs whole or in two halves.

The graph takes uint8 frames and gives class probabilities (what every exported model has
given), and also each frame's features and, before they are pooled, each frame's last feature map
(`frame_maps`, which explanations read); a second input, `features`, runs the temporal head
alone on windows of features. `export_model` writes it with the `ModelCard` as metadata and
refuses to write anything if ONNX Runtime does not reproduce PyTorch on both paths. `to_onnx`
is the one place that calls the exporter, also used for the feature extractor training runs.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from actionrec.errors import ExportError
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
from actionrec.training.model import ActionModel, ExportGraph
from actionrec.video.spec import SAMPLING_RULE, SAMPLING_VERSION

DEFAULT_OPSET = 17


def export_model(model: ActionModel, card: ModelCard, out: str | Path, *, opset: int = DEFAULT_OPSET,
                 tolerance: float = 1e-4) -> Path:
    """Write `model` as ONNX with `card`, then check ONNX Runtime agrees with PyTorch.

    On disagreement nothing is written and `ExportError` is raised.
    """
    import onnx
    from onnx import numpy_helper

    # Clips are sampled by this actionrec's rule, whatever card was given: the card says which.
    card = replace(card, num_features=model.num_features, sampling=SAMPLING_RULE, sampling_version=SAMPLING_VERSION)
    frames, size = card.num_frames, card.image_size
    graph_module = MapExportGraph(model).eval()
    example = (torch.randint(0, 256, (2, frames, size, size, 3), dtype=torch.uint8,
                             generator=torch.Generator().manual_seed(0)),
               torch.zeros(3, frames, model.num_features))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        to_onnx(graph_module, example, tmp, [INPUT_NAME, FEATURES_INPUT],
                [OUTPUT_NAME, FEATURES_OUTPUT, WINDOW_OUTPUT, MAPS_OUTPUT],
                {INPUT_NAME: {0: "batch", 1: "time", 2: "height", 3: "width"}, FEATURES_INPUT: {0: "windows"},
                 OUTPUT_NAME: {0: "batch"}, FEATURES_OUTPUT: {0: "batch", 1: "time"}, WINDOW_OUTPUT: {0: "windows"},
                 MAPS_OUTPUT: {0: "batch", 1: "time", 2: "rows", 3: "cols"}},
                opset)
        graph = onnx.load(str(tmp))
        # A default value makes `features` optional: feeding frames alone works as it always has.
        default = numpy_helper.from_array(np.zeros((1, frames, model.num_features), np.float32), FEATURES_INPUT)
        graph.graph.initializer.append(default)
        write_card(graph, card)
        graph.doc_string = f"actionrec {card.name}: {len(card.labels)} actions from {frames} frames"
        onnx.save(graph, str(tmp))
        check_parity(graph_module, tmp, frames, size, tolerance)  # raises, and nothing is written
    return out


class MapExportGraph(ExportGraph):
    """`ExportGraph` with each frame's last feature map before pooling as a fourth output:
    frame_maps (B, T, rows, cols, F), channels last, whose mean over the rows and columns is
    frame_features. The loader cuts the graph there too, so an explanation can blank one cell of
    the map and re-pool (`actionrec.runtime.explain`)."""

    def forward(self, frames: torch.Tensor, features: torch.Tensor  # type: ignore[override]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        model = self.model
        b, t = frames.shape[:2]
        maps = model.backbone(model.preprocess(frames))  # (B*T, F, rows, cols)
        frame_features = F.adaptive_avg_pool2d(maps, 1).flatten(1).reshape(b, t, -1)  # as forward_features
        probabilities = torch.softmax(model.forward_head(frame_features), dim=-1)
        window_probabilities = torch.softmax(model.forward_head(features), dim=-1)
        frame_maps = maps.permute(0, 2, 3, 1).reshape(b, t, maps.shape[2], maps.shape[3], maps.shape[1])
        return probabilities, frame_features, window_probabilities, frame_maps


def to_onnx(module: torch.nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], path: Path,
            input_names: str | list[str], output_names: str | list[str], dynamic_axes: dict,
            opset: int = DEFAULT_OPSET) -> None:
    """torch.onnx.export with the TorchScript exporter, which writes nn.LSTM as one ONNX LSTM op."""
    examples = example if isinstance(example, tuple) else (example,)
    inputs = [input_names] if isinstance(input_names, str) else input_names
    outputs = [output_names] if isinstance(output_names, str) else output_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice and LSTM batch-size notes
        torch.onnx.export(module, examples, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)


def check_parity(graph_module: ExportGraph, onnx_path: Path, frames: int, size: int, tolerance: float) -> float:
    """Compare PyTorch and ONNX Runtime on random frames at batch sizes 1 and 3, whole and in halves, and
    the frame maps pooled by their mean with the frame features."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch in (1, 3):
        x = rng.integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8)
        with torch.inference_mode():
            features = graph_module.model.forward_features(torch.from_numpy(x))
            expected = torch.softmax(graph_module.model.forward_head(features), dim=-1).numpy()
        whole = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        encoded = session.run([FEATURES_OUTPUT], {INPUT_NAME: x.reshape(1, batch * frames, size, size, 3)})[0]
        halves = session.run([WINDOW_OUTPUT], {INPUT_NAME: x[:1, :1],
                                               FEATURES_INPUT: encoded.reshape(batch, frames, -1)})[0]
        pooled = session.run([MAPS_OUTPUT], {INPUT_NAME: x})[0].mean(axis=(2, 3))  # what explanations re-pool
        scale = max(1.0, float(np.abs(features.numpy()).max()))
        worst = max(worst, float(np.abs(expected - whole).max()), float(np.abs(expected - halves).max()),
                    float(np.abs(features.numpy().reshape(1, batch * frames, -1) - encoded).max()) / scale,
                    float(np.abs(features.numpy() - pooled).max()) / scale)
    if worst > tolerance:
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree by up to {worst:.2e} (tolerance {tolerance:.0e}); "
            f"the export is wrong and was not written."
        )
    return worst
