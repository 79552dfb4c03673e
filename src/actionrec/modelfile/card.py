"""The model card: everything an exported model file says about itself, typed.

An exported `model.onnx` carries one metadata entry (key `actionrec`, JSON) with the labels, the
clip it expects (frames, size), the normalisation inside the graph, the sampling rule, and facts
about training. A server needs nothing but the file: `ModelCard.from_json` reads and checks that
entry, `ModelCard.to_json` writes it; `read_card` reads it from a file's metadata alone, without
reading its graph. No torch, no ONNX Runtime, no onnx package here (`update_card` imports onnx).

It also carries the measured rule for "none of these" (`unknown`, see `actionrec.modelfile.unknown`).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from actionrec.errors import ModelFileError
from actionrec.files import atomic_output
from actionrec.modelfile import graph_split
from actionrec.modelfile.hub import resolve_model
from actionrec.modelfile.unknown import UnknownRule
from actionrec.video.spec import SAMPLING_RULE, SAMPLING_VERSION, ClipSpec

METADATA_KEY = "actionrec"
CARD_FORMAT = 3  # 2: the graph also runs its two halves apart (FEATURES_*, WINDOW_OUTPUT); 1 is refused at load;
# 3 (actionrec 0.4): its unknown rule may score similarity and confidence together, its head may be a
# motion head; a format-3 card reads as 2 did, and actionrec 0.3 refuses it as newer (not as damaged)
INPUT_NAME, OUTPUT_NAME = "frames", "probabilities"
# Format 2 graphs: frames -> FEATURES_OUTPUT (per frame), and the head alone: FEATURES_INPUT -> WINDOW_OUTPUT.
FEATURES_INPUT, FEATURES_OUTPUT, WINDOW_OUTPUT = "features", "frame_features", "window_probabilities"
# Files exported since actionrec 0.4 also give each frame's last feature map before pooling, channels last:
# (batch, time, rows, cols, features); its mean over the cells is FEATURES_OUTPUT. Explanations read it.
MAPS_OUTPUT = "frame_maps"


@dataclass(frozen=True)
class TemporalHead:
    """A temporal head (what reads the sequence of frame features): what it is, as a model's Hub page
    and `train --help` say, and whether `actionrec train` builds it (else only `teach` makes it)."""

    description: str
    trainable: bool


# The one table of temporal heads, by the name a card records (`model.temporal`). `train --temporal`
# offers the trainable ones and training/model.py has one module for each; `taught_linear` is the head
# `actionrec teach` fits with NumPy (actionrec.teaching.head).
TEMPORAL_HEADS: dict[str, TemporalHead] = {
    "lstm": TemporalHead("an LSTM reading the frame features in order", trainable=True),
    "mean": TemporalHead("the mean of the frame features, then an MLP (the order-blind baseline)", trainable=True),
    "motion": TemporalHead("the mean of the frame features, their spread over time and their frame-to-frame "
                           "change, then an MLP", trainable=True),
    "motion_lstm": TemporalHead("an LSTM reading the frame features in order beside their mean, spread and "
                                "frame-to-frame change", trainable=True),
    "taught_linear": TemporalHead("a linear classifier on the mean of the frame features, fitted to example "
                                  "clips by `actionrec teach` before actionrec 0.4", trainable=False),
    "taught_motion": TemporalHead("a linear classifier on the mean of the frame features and their spread over "
                                  "time, fitted to example clips by `actionrec teach`", trainable=False),
}
TRAINABLE_HEADS: tuple[str, ...] = tuple(name for name, head in TEMPORAL_HEADS.items() if head.trainable)

# What a card may hold: real ones are far under. A 101-class card with 1280-feature class means
# is about 350 KB, nearly all of it the means; everything else (what GET /v1/model shows, with no
# key) is a few KB. A clip's size is bounded so that a card cannot ask for gigabytes of frames.
MAX_CARD_BYTES = 4 * 1024 * 1024  # the whole card: about 1200 classes of 1280-feature means
MAX_SHOWN_CARD_BYTES = 64 * 1024  # the card without the unknown rule's class means and center
MAX_NUM_FRAMES = 128
# num_frames x image_size^2: 16 frames of 512 x 512, 64 of 256 x 256. An encoder's activations for one
# 1024 x 1024 frame of MobileNetV2 took about 250 MB, so a clip this size stays near a gigabyte.
MAX_CLIP_PIXELS = 16 * 512 * 512
MAX_CARD_DEPTH = 32  # a real card is four levels deep

# ImageNet statistics, applied inside the model graph on 0..255 RGB; recorded in every card so
# other runtimes can reproduce them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    scale: float = 255
    in_graph: bool = True


@dataclass
class ModelCard:
    """The typed contents of a model file's metadata."""

    name: str
    version: str
    labels: list[str]
    num_frames: int
    image_size: int
    model: dict[str, Any] = field(default_factory=dict)  # temporal head, sizes, backbone and its weights
    dataset: str | None = None
    validation: dict[str, Any] | None = None  # the best epoch's history row
    versions: dict[str, str] = field(default_factory=dict)
    exported_at: str | None = None
    clip_duration_s: float | None = None  # typical duration of the training clips: a timeline window's length
    # per-frame features between the two halves: every file's card has them; 0 only in a card not
    # exported yet (export sets it, and a file whose card lacks it is refused as damaged)
    num_features: int = 0
    normalization: Normalization = field(default_factory=Normalization)
    precision: str = "fp32"  # "int8": a quantized copy (see `quantization`)
    quantization: dict[str, Any] | None = None
    # the measured "none of these" rule (`actionrec.modelfile.unknown.UnknownRule`)
    unknown: dict[str, Any] | None = None
    sampling: str = SAMPLING_RULE  # the rule in words, for people and other runtimes
    sampling_version: int = SAMPLING_VERSION  # the rule's version: checked at load
    format: int = CARD_FORMAT

    @property
    def spec(self) -> ClipSpec:
        return ClipSpec(self.num_frames, self.image_size)

    @property
    def unknown_rule(self) -> UnknownRule | None:
        """The rule export measured for answers that show none of the labels; None for files
        exported before it was measured."""
        return None if self.unknown is None else UnknownRule.from_dict(self.unknown, len(self.labels),
                                                                        self.num_features)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["normalization"] = {key: list(value) if isinstance(value, tuple) else value
                                 for key, value in data["normalization"].items()}
        data["input"] = {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": ["batch", self.num_frames, self.image_size, self.image_size, 3],
            "channels": "RGB",
        }
        data["output"] = {"name": OUTPUT_NAME, "meaning": "class probabilities (softmax), in the order of labels"}
        if self.num_features:
            data["halves"] = {
                "encoder": f"{INPUT_NAME} (batch, time, size, size, 3) -> {FEATURES_OUTPUT} "
                           f"(batch, time, {self.num_features})",
                "head": f"{FEATURES_INPUT} (windows, {self.num_frames}, {self.num_features}) -> {WINDOW_OUTPUT} "
                        "(windows, classes); its default is one window of zeros, so feeding frames alone works",
            }
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: str | None, source: str) -> ModelCard:
        """Read and check a card; `source` names the file in error messages."""
        if raw is None:
            raise ModelFileError(
                f"{source}: this ONNX file has no '{METADATA_KEY}' metadata (labels, frames, input size), "
                "so it was not made by `actionrec export`. Export the model with that command."
            )
        if len(raw) > MAX_CARD_BYTES:
            raise _damaged(source, f"{len(raw) / 1024 / 1024:.1f} MB, where a card is at most "
                                   f"{MAX_CARD_BYTES // 1024 // 1024} MB")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise _damaged(source, f"not JSON: {exc}") from None
        except RecursionError:
            raise _damaged(source, "nested too deep to be a card") from None
        if not isinstance(data, dict):
            raise _damaged(source, "not a JSON object")
        if _depth(data) > MAX_CARD_DEPTH:  # what JSON can read may still be too deep to copy or show
            raise _damaged(source, f"nested more than {MAX_CARD_DEPTH} deep, where a card is a few levels deep")
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> ModelCard:
        card_format, sampling_version = _contract(data, source)
        num_features = data.get("num_features")
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise _damaged(source, "'num_features' (the features a frame between the two halves) must be a positive "
                                   f"whole number, not {num_features!r}")
        for key in ("labels", "num_frames", "image_size"):
            if key not in data:
                raise _damaged(source, f"no {key!r}")
        labels = data["labels"]
        if not (isinstance(labels, list) and labels and all(isinstance(label, str) for label in labels)):
            raise _damaged(source, f"'labels' must be a non-empty list of names, not {labels!r}")
        for key in ("num_frames", "image_size"):
            if not isinstance(data[key], int) or isinstance(data[key], bool):
                raise _damaged(source, f"{key!r} must be a whole number, not {data[key]!r}")
        _check_clip(data["num_frames"], data["image_size"], source)
        _check_shown_size(data, source)
        normalization = data.get("normalization") or {}
        unknown = data.get("unknown") if isinstance(data.get("unknown"), dict) else None
        if unknown is not None:
            try:
                UnknownRule.from_dict(unknown, len(labels), num_features)
            except (ValueError, KeyError, TypeError) as exc:
                raise _damaged(source, f"'unknown': {exc}") from None
        clip_duration = data.get("clip_duration_s")
        if clip_duration is not None and not (isinstance(clip_duration, (int, float)) and 0 < clip_duration < 3600):
            raise _damaged(source, f"'clip_duration_s' must be a positive number of seconds, not {clip_duration!r}")
        return cls(
            name=str(data.get("name") or "model"),
            version=str(data.get("version") or "unknown"),
            labels=list(labels),
            num_frames=data["num_frames"],
            image_size=data["image_size"],
            model=_mapping(data.get("model")),
            dataset=None if data.get("dataset") is None else str(data["dataset"]),
            validation=data.get("validation") if isinstance(data.get("validation"), dict) else None,
            versions=_mapping(data.get("versions")),
            exported_at=data.get("exported_at"),
            clip_duration_s=None if clip_duration is None else float(clip_duration),
            num_features=num_features,
            normalization=_normalization(normalization, source),
            precision=str(data.get("precision") or "fp32"),
            quantization=data.get("quantization") if isinstance(data.get("quantization"), dict) else None,
            unknown=unknown,
            sampling=str(data.get("sampling") or SAMPLING_RULE),
            sampling_version=sampling_version,
            format=card_format,
        )


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card a model file (or a Hub name, hf://OWNER/NAME, which it downloads) carries: labels,
    frames, input size, ... Read from the file's metadata alone, skipping its graph: no ONNX Runtime
    session, no onnx package."""
    path = resolve_model(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file. Export one with `actionrec export RUN_DIR`.")
    with open(path, "rb") as file:
        return card_of_file(file, path)


def card_of_file(file: io.BufferedIOBase | io.BytesIO, source: str | os.PathLike) -> ModelCard:
    """The card in a model file opened for reading (or io.BytesIO of its bytes); `source` names it."""
    try:
        raw = graph_split.metadata(file).get(METADATA_KEY)  # type: ignore[arg-type]
    except graph_split.CannotSplit as exc:
        raise ModelFileError(f"{source}: this is not an ONNX model file ({exc}). "
                             "Export one with `actionrec export RUN_DIR`.") from None
    return ModelCard.from_json(raw, str(source))


def write_card(model: Any, card: ModelCard) -> None:
    """Put `card` in an ONNX model's (a ModelProto's) metadata, in place of what was there.
    ModelFileError, and the model left as it was, where the card is past a reader's limits (too large,
    too many frames): a file every reader refuses is never written."""
    text = card.to_json()
    too_large = (f"{len(text) / 1024 / 1024:.1f} MB, where a card is at most {MAX_CARD_BYTES // 1024 // 1024} MB"
                 if len(text) > MAX_CARD_BYTES else None)
    if problem := too_large or _clip_problem(card.num_frames, card.image_size) or _shown_size_problem(card.to_dict()):
        raise ModelFileError(f"{card.name}: this model's card is past what actionrec reads ({problem}), so it is "
                             "not written.")
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text


def update_card(path: Path, **changes: Any) -> ModelCard:
    """Change fields of the card in the model file at `path` (needs the `onnx` package), in place."""
    import onnx

    model = onnx.load(str(path))
    card = replace(card_of_proto(model, str(path)), **changes)
    write_card(model, card)
    with atomic_output(path) as tmp:
        onnx.save(model, str(tmp))
    return card


def card_of_proto(model: Any, source: str) -> ModelCard:
    """The card in an ONNX model's (a ModelProto's) metadata; `source` names it in errors."""
    return ModelCard.from_json(next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None), source)


def _contract(data: dict[str, Any], source: str) -> tuple[int, int]:
    """(card format, sampling version) of a card, refused unless this actionrec reads them: a file
    from before the two halves (format 1), or one whose frames were sampled by another rule. A card
    with no sampling version was written before it was recorded, when version 1 was the rule."""
    card_format = data.get("format", 1)
    if not isinstance(card_format, int) or isinstance(card_format, bool):
        raise _damaged(source, f"'format' must be a whole number, not {card_format!r}")
    if card_format < 2:
        raise ModelFileError(
            f"{source} was exported by an older actionrec (card format {card_format}: one graph, without "
            "the encoder and head this actionrec runs apart), which actionrec 0.3 and later no longer read: "
            "re-export it with `actionrec export RUN_DIR` or re-teach it with `actionrec teach`.")
    if card_format > CARD_FORMAT:
        raise ModelFileError(
            f"{source} was written by a newer actionrec (card format {card_format}; this one reads format "
            f"{CARD_FORMAT}): upgrade actionrec (`pip install -U actionrec`) to run it.")
    version = data.get("sampling_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise _damaged(source, f"'sampling_version' must be a whole number, not {version!r}")
    if version != SAMPLING_VERSION:
        todo = ("upgrade actionrec (`pip install -U actionrec`) to run it" if version > SAMPLING_VERSION else
                "run it with the actionrec that exported it, or train it again and re-export it with "
                "`actionrec export RUN_DIR`")
        raise ModelFileError(
            f"{source}: its frames are sampled by sampling rule version {version}, and this actionrec "
            f"implements version {SAMPLING_VERSION} only, so it would see clips unlike those it was trained "
            f"on: {todo}.")
    return card_format, version


def _check_clip(num_frames: int, image_size: int, source: str) -> None:
    """Refuse a clip no model of this package uses, before anything is allocated for it."""
    if problem := _clip_problem(num_frames, image_size):
        raise _damaged(source, problem)


def _clip_problem(num_frames: int, image_size: int) -> str | None:
    try:
        ClipSpec(num_frames, image_size)
    except ValueError as exc:
        return str(exc)
    if num_frames > MAX_NUM_FRAMES:
        return f"'num_frames' is {num_frames}, and a clip is at most {MAX_NUM_FRAMES} frames"
    if num_frames * image_size ** 2 > MAX_CLIP_PIXELS:
        return (f"a clip of {num_frames} frames of {image_size} x {image_size} pixels, where a clip is at most "
                f"{MAX_CLIP_PIXELS:,} pixels (16 frames of 512 x 512)")
    return None


def _depth(value: Any) -> int:
    """How deeply a JSON value nests, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_CARD_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _check_shown_size(data: dict[str, Any], source: str) -> None:
    """Refuse a card whose parts other than the unknown rule's class means and center (what GET
    /v1/model shows without a key: labels, facts, the rule's description) are too large to show."""
    if problem := _shown_size_problem(data):
        raise _damaged(source, problem)


def _shown_size_problem(data: dict[str, Any]) -> str | None:
    unknown = data.get("unknown")
    unknown = unknown if isinstance(unknown, dict) else {}
    described = {key: value for key, value in unknown.items() if key not in ("means", "center")}
    shown = len(json.dumps({key: value for key, value in data.items() if key != "unknown"} | {"unknown": described}))
    if shown > MAX_SHOWN_CARD_BYTES:
        return (f"{shown // 1024} KB besides the unknown rule, where a card's labels and facts take at most "
                f"{MAX_SHOWN_CARD_BYTES // 1024} KB")
    return None


def _normalization(given: Any, source: str) -> Normalization:
    if not isinstance(given, dict):
        return Normalization()
    mean, std = given.get("mean", IMAGENET_MEAN), given.get("std", IMAGENET_STD)
    scale, in_graph = given.get("scale", 255), given.get("in_graph", True)
    numbers = [*mean, *std, scale] if isinstance(mean, (list, tuple)) and isinstance(std, (list, tuple)) else [None]
    if len(numbers) != 7 or not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers) \
            or not isinstance(in_graph, bool):
        raise _damaged(source, "'normalization' must give three means, three deviations, a scale and whether "
                               f"the graph applies them, not {given!r}")
    return Normalization(mean=tuple(mean), std=tuple(std), scale=scale, in_graph=in_graph)


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _damaged(source: str, why: str) -> ModelFileError:
    return ModelFileError(f"{source}: the '{METADATA_KEY}' metadata is damaged ({why}). "
                          "Export the model again with `actionrec export RUN_DIR`.")
