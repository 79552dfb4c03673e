"""An int8 copy of an exported model: static quantization of the backbone, calibrated on real clips.

MobileNetV2's convolutions (and the additions and clips between them) get per-channel int8
weights and uint8 activations in QDQ form, with activation ranges measured on clips the model
reads as a prediction does; the pooling and the temporal head stay in float. The copy keeps the
model file's card, saying how it was quantized, so a server treats it like any other model.

Each activation's range is the mean, over the calibration clips, of each clip's own minimum and
maximum, rather than the extremes of them all: a rare outlier then no longer widens the range for
every clip (measured on real footage in docs/train.md: the frame features' error against fp32
fell from 26% to 16%).

Whether it pays depends on the CPU: int8 convolutions are fast where the CPU has VNNI
instructions (AVX-512 VNNI, AVX-VNNI) and can be slower than float where it has only AVX2.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from actionrec.errors import ExportError
from actionrec.files import atomic_output
from actionrec.modelfile.card import FEATURES_INPUT, INPUT_NAME, card_of_proto, write_card

QUANTIZED_OPS = ("Conv", "Add", "Clip")  # in the backbone; its pooling into frame features stays float
METHOD = ("static, QDQ, per-channel int8 weights, uint8 activations, each activation's range the mean of its "
          "per-clip minimum and maximum")


def quantize_model(model_path: Path, clips: list[np.ndarray], out: Path, *, calibrated_on: str) -> Path:
    """Write an int8 copy of `model_path` to `out`, its activation ranges measured on `clips`
    ((T, S, S, 3) uint8 each; training clips, so that the copy is judged on clips it was not
    calibrated on). `calibrated_on` says where the clips came from (for the card)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not clips:
        raise ExportError("no clips to calibrate the int8 model on: the run's training clips could not be read.")
    graph = onnx.load(str(model_path))
    card = card_of_proto(graph, str(model_path))
    # The optional `features` input has a default (an initializer): calibration must treat it as an input.
    defaults = [init for init in graph.graph.initializer if init.name == FEATURES_INPUT]
    for init in defaults:
        graph.graph.initializer.remove(init)
    backbone = [node.name for node in graph.graph.node if node.op_type in QUANTIZED_OPS and "backbone" in node.name]
    if not backbone:
        raise ExportError(f"{model_path}: found no backbone convolutions to quantize; was it made by "
                          "`actionrec export`?")
    no_features = np.zeros((1, card.num_frames, card.num_features), np.float32)

    class Clips(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds: Iterator[dict] = ({INPUT_NAME: clip[None], FEATURES_INPUT: no_features} for clip in clips)

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="actionrec-int8-") as scratch:
        float_path, prepared_path, int8_path = (Path(scratch) / name for name in ("float.onnx", "prepared.onnx",
                                                                                  "int8.onnx"))
        onnx.save(graph, str(float_path))
        # Folds the exporter's Identity nodes (shared biases) and infers shapes, which quantization needs.
        quant_pre_process(str(float_path), str(prepared_path), skip_symbolic_shape=True)
        prepared = onnx.load(str(prepared_path))
        backbone = [node.name for node in prepared.graph.node
                    if node.op_type in QUANTIZED_OPS and "backbone" in node.name]
        quantize_static(str(prepared_path), str(int8_path), Clips(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=backbone,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                       # one clip a batch: the range is the mean of the clips' own ranges
                                       "CalibMovingAverage": True})
        quantized = onnx.load(str(int8_path))
    quantized.graph.initializer.extend(defaults)
    card = replace(card, precision="int8", quantization={
        "method": METHOD,
        "quantized": "the MobileNetV2 backbone's convolutions; its pooling and the temporal head are float",
        "calibrated_on": calibrated_on, "calibration_clips": len(clips)})
    write_card(quantized, card)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        onnx.save(quantized, str(tmp))
    return out
