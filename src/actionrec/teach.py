"""Teaching a model new actions from a few clips each, in seconds, without torch.

    from actionrec.teach import teach
    result = teach("base.onnx", {"squat": [...paths], "wave": [...]}, "mine.onnx")

The base model's encoder is kept as it is: each example clip is read as predictions read videos
(`read_views`: the served frames, plus a few jittered views of them), and its frames go through the
base's encoder. On those features a new head is fitted: the frames' mean, scaled to length 1, and
a linear softmax classifier on it, fitted with NumPy in well under a second. A linear head cannot
overfit a handful of clips as an LSTM can, and needs no torch (README, "Teach it your own actions",
compares the two on real clips). The new file is the base's graph with its head replaced by this
one, so it runs whole and in two halves as every exported model does, carries a card that says it
was taught (from which base, from how many clips), and a calibrated "none of these" rule whose
threshold is measured by leaving each clip out in turn.

Needs the `onnx` package (in the `serve` extra) to write the graph; ONNX Runtime runs it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from actionrec.card import FEATURES_INPUT, FEATURES_OUTPUT, INPUT_NAME, OUTPUT_NAME, WINDOW_OUTPUT, ModelCard, write_card
from actionrec.errors import ActionrecError, ModelFileError, VideoError
from actionrec.files import atomic_output, sha256_of
from actionrec.inference import Recognizer
from actionrec.unknown import CENTERED_SIMILARITY, FEATURE_SIMILARITY, UnknownRule, unit
from actionrec.video import DecodeLimits, read_clip

LOO_FLAGGED = 0.2  # quantile of the leave-one-out scores taken as the threshold
SUBSETS = 4  # pooled examples drawn from random halves of each view's frames
L2 = 1e-3  # weight decay of the linear head
STEPS = 300
MAX_ACTIONS = 50
MAX_CLIPS_PER_ACTION = 50
MAX_CLIP_S = 60.0  # an example is a short clip of the action; longer ones are refused
MAX_NAME = 40
NAME_PATTERN = re.compile(r"^[\w][\w .'&+-]*$")  # letters, digits, _, and spaces . ' & + - inside
HEAD = "taught_linear"


class TeachError(ActionrecError, ValueError):
    """The examples cannot teach a model: too few, unreadable, badly named, or a base that cannot be taught."""

    reason = "cannot_teach"


@dataclass
class TeachResult:
    path: Path
    card: ModelCard
    clips: dict[str, int]  # clips used per action
    skipped: dict[str, str]  # example path -> why it could not be read
    loo_accuracy: float | None  # leave-one-clip-out accuracy of the head (None with one clip of some action)
    timings_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"model": str(self.path), "labels": self.card.labels, "clips": self.clips, "skipped": self.skipped,
                "leave_one_out_accuracy": self.loo_accuracy, "timings_s": self.timings_s,
                "unknown": self.card.unknown_rule.describe() if self.card.unknown_rule else None}


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def check_action_name(name: str) -> str:
    """`name`, stripped, or TeachError saying what a name may be."""
    stripped = " ".join(str(name).split())
    if not stripped:
        raise TeachError("An action's name is empty. Name it, e.g. 'squat' or 'waving'.")
    if len(stripped) > MAX_NAME:
        raise TeachError(f"The action name {stripped[:MAX_NAME]!r}... is {len(stripped)} characters long; "
                         f"keep it to {MAX_NAME}.")
    if not NAME_PATTERN.match(stripped):
        raise TeachError(f"The action name {stripped!r} has characters a name cannot have: use letters, digits, "
                         "spaces and _ . ' & + - (not starting with a sign).")
    return stripped


def examples_in_folder(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """{action: its clips} of a folder with one subfolder per action."""
    from actionrec.video.probe import is_video_name

    root = Path(folder)
    if not root.is_dir():
        raise TeachError(f"{root}: no such folder. Give a folder with one subfolder of clips per action.")
    examples = {sub.name: sorted(p for p in sub.iterdir() if p.is_file() and is_video_name(p.name))
                for sub in sorted(root.iterdir()) if sub.is_dir() and not sub.name.startswith(".")}
    empty = [name for name, clips in examples.items() if not clips]
    if empty:
        raise TeachError(f"{root / empty[0]}: no video clips in this action's folder. Put a few clips of the action "
                         "there (.mp4, .avi, .mov, .webm, ...) or remove the folder.")
    return examples


def check_base(recognizer: Recognizer) -> None:
    """TeachError unless `recognizer`'s model can lend its encoder: a file with two halves."""
    if not recognizer.split or not recognizer.card.num_features:
        raise TeachError(f"{recognizer.model_path}: this model was exported before its encoder could run alone, so "
                         "it cannot be taught. Export it again with this version (`actionrec export RUN_DIR`).")


# --------------------------------------------------------------------------- reading the examples


def read_examples(recognizer: Recognizer, examples: Mapping[str, Sequence[str | os.PathLike]], *,
                  progress: Progress | None = None
                  ) -> tuple[dict[str, list[np.ndarray]], dict[str, str], list[float]]:
    """Each example clip's (T, F) features, its frames read as a prediction reads them and put
    through the base's encoder, by action; the clips that could not be read, and why; the
    durations of those that could."""
    limits = DecodeLimits(max_duration_s=MAX_CLIP_S)
    total = sum(len(clips) for clips in examples.values())
    features: dict[str, list[np.ndarray]] = {name: [] for name in examples}
    skipped: dict[str, str] = {}
    durations: list[float] = []
    done = 0
    for name, clips in examples.items():
        for clip in clips:
            try:
                read = read_clip(clip, recognizer.spec, limits=limits)
                features[name].append(recognizer.encode(read.frames).astype(np.float32))
                durations.append(read.info.duration_s)
            except VideoError as exc:
                skipped[str(clip)] = str(exc)
            done += 1
            if progress:
                progress("reading", done, total)
    return features, skipped, durations


# --------------------------------------------------------------------------- the head


def pool(features: np.ndarray) -> np.ndarray:
    """(..., T, F) frame features -> (..., F): their mean, scaled to length 1. What the head reads."""
    return unit(np.asarray(features, np.float32).mean(axis=-2))


def training_examples(clips: list[np.ndarray], rng: np.random.Generator, subsets: int = SUBSETS) -> np.ndarray:
    """Pooled examples of one action: each clip's frames, and means of random halves of them."""
    rows = []
    for clip in clips:
        rows.append(pool(clip))
        for _ in range(subsets):
            rows.append(pool(clip[rng.choice(len(clip), size=max(1, len(clip) // 2), replace=False)]))
    return np.stack(rows)


@dataclass
class LinearHead:
    """softmax(pool(features) @ weights.T + bias) over `labels`."""

    weights: np.ndarray  # (classes, F)
    bias: np.ndarray  # (classes,)

    def probabilities(self, pooled: np.ndarray) -> np.ndarray:
        logits = pooled @ self.weights.T + self.bias
        logits -= logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)


def fit_head(x: np.ndarray, y: np.ndarray, num_classes: int, *, l2: float = L2, steps: int = STEPS,
             lr: float = 0.05) -> LinearHead:
    """A linear softmax classifier of unit-length rows `x` (N, F) with classes `y`, fitted by Adam
    on the whole set at once (cross-entropy plus `l2` weight decay; each class weighs the same)."""
    x = x.astype(np.float64)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weight = 1.0 / np.maximum(counts[y], 1) / max(1, int((counts > 0).sum()))
    onehot = np.eye(num_classes)[y]
    params = [np.zeros((num_classes, x.shape[1])), np.zeros(num_classes)]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for step in range(1, steps + 1):
        logits = x @ params[0].T + params[1]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        delta = (probs - onehot) * weight[:, None]
        grads = [delta.T @ x + l2 * params[0], delta.sum(axis=0)]
        for param, grad, moment in zip(params, grads, moments):
            moment[0] = 0.9 * moment[0] + 0.1 * grad
            moment[1] = 0.999 * moment[1] + 0.001 * grad * grad
            m_hat, v_hat = moment[0] / (1 - 0.9 ** step), moment[1] / (1 - 0.999 ** step)
            param -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return LinearHead(params[0].astype(np.float32), params[1].astype(np.float32))


def fit_on_clips(clips_by_class: list[list[np.ndarray]], *, seed: int = 0,
                 prototypes: np.ndarray | None = None) -> LinearHead:
    """The head for these actions' (T, F) clips; `prototypes` (K, F): one pooled example for each
    of K further classes numbered after them (a base's own actions, which `--keep-base` keeps from
    their class means alone)."""
    rng = np.random.default_rng(seed)
    xs = [training_examples(clips, rng) for clips in clips_by_class]
    ys = [np.full(len(rows), label) for label, rows in enumerate(xs)]
    if prototypes is not None:
        xs.append(unit(prototypes))
        ys.append(np.arange(len(clips_by_class), len(clips_by_class) + len(prototypes)))
    return fit_head(np.concatenate(xs), np.concatenate(ys), len(clips_by_class) + (0 if prototypes is None
                                                                                   else len(prototypes)))


def leave_one_out(clips_by_class: list[list[np.ndarray]], prototypes: np.ndarray | None = None,
                  max_clips: int = 60) -> float | None:
    """The share of clips (up to `max_clips`, spread over the actions) that a head fitted without
    each one names right; None when some action has a single clip."""
    if min(len(clips) for clips in clips_by_class) < 2:
        return None
    order = [(label, i) for label, clips in enumerate(clips_by_class) for i in range(len(clips))]
    right = []
    for label, i in order[:: max(1, -(-len(order) // max_clips))]:
        rest = [[clip for j, clip in enumerate(clips) if (c, j) != (label, i)] for c, clips in enumerate(clips_by_class)]
        head = fit_on_clips(rest, prototypes=prototypes)
        right.append(int(head.probabilities(pool(clips_by_class[label][i])[None])[0].argmax() == label))
    return round(float(np.mean(right)), 4)


def base_center(rule: UnknownRule | None) -> np.ndarray | None:
    """Where a base's card can tell it, the mean of many actions' features: the mean of its class
    means, or the center it was itself taught around. A center the few examples do not pull
    towards themselves."""
    if rule is None or rule.means is None:
        return None
    if rule.center is not None:
        return rule.center
    return rule.means.mean(0) if len(rule.means) > 1 else None


def unknown_rule(clips_by_class: list[list[np.ndarray]], center: np.ndarray | None, kept_means: np.ndarray | None,
                 num_examples: int) -> UnknownRule:
    """Centered similarity (see `actionrec.unknown`) to the taught actions' means (and to a base's
    `kept_means`, with `--keep-base`), its threshold at the `LOO_FLAGGED` quantile of the example
    clips' scores, each clip scored against means made without it. `center`: `base_center`'s, or
    None for the examples' own mean.

    Leaving a clip out makes its action's mean one clip poorer than the served one, so these
    scores run low: the quantile is higher than a validation set's `KNOWN_FLAGGED` (README gives
    the rates measured on real clips)."""
    pooled = [np.stack([pool(clip) for clip in clips]) for clips in clips_by_class]
    center = (np.concatenate(pooled).mean(0) if center is None else center).astype("<f2").astype(np.float32)
    centered = [unit(rows - center) for rows in pooled]
    means = np.stack([unit(rows.mean(0)) for rows in centered])
    if kept_means is not None:
        means = np.concatenate([means, unit(kept_means - center)])
    scores = []
    for label, rows in enumerate(centered):
        for i in range(len(rows)):
            rest = np.delete(rows, i, axis=0)
            loo = np.delete(means, label, axis=0) if not len(rest) else np.concatenate(
                [means[:label], unit(rest.mean(0))[None], means[label + 1:]])
            scores.append(float((rows[i] @ loo.T).max()))
    threshold = float(np.quantile(scores, LOO_FLAGGED))
    return UnknownRule(CENTERED_SIMILARITY, threshold, means.astype("<f2").astype(np.float32), center=center,
                       known_flagged=round(float((np.array(scores) < threshold).mean()), 4),
                       calibrated_on=f"{num_examples} example clips, each left out of its action's mean in turn")


# --------------------------------------------------------------------------- the graph


def write_taught_graph(base_path: Path, head: LinearHead, card: ModelCard, out: Path) -> None:
    """The base's graph up to the frame features, then `head` on them (whole clips) and on the
    `features` input (windows): the same inputs and outputs as every exported model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    try:
        model = onnx.load(str(base_path))
    except Exception as exc:
        raise ModelFileError(f"{base_path}: cannot read this model file ({exc}).") from None
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    needed, stack = set(), [FEATURES_OUTPUT]
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(node.input)
    encoder_nodes = [node for node in graph.node if id(node) in needed]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    axes_as_input = opset >= 18

    def head_nodes(source: str, output: str, prefix: str) -> list:
        mean_inputs = [source] + ([f"{prefix}_axes"] if axes_as_input else [])
        mean_kwargs = {} if axes_as_input else {"axes": [1]}
        return [
            helper.make_node("ReduceMean", mean_inputs, [f"{prefix}_mean"], keepdims=0, **mean_kwargs),
            helper.make_node("ReduceL2", [f"{prefix}_mean"] + ([f"{prefix}_axes_last"] if axes_as_input else []),
                             [f"{prefix}_norm"], keepdims=1, **({} if axes_as_input else {"axes": [-1]})),
            helper.make_node("Max", [f"{prefix}_norm", "taught_eps"], [f"{prefix}_norm_safe"]),
            helper.make_node("Div", [f"{prefix}_mean", f"{prefix}_norm_safe"], [f"{prefix}_pooled"]),
            helper.make_node("Gemm", [f"{prefix}_pooled", "taught_weights", "taught_bias"], [f"{prefix}_logits"],
                             transB=1),
            helper.make_node("Softmax", [f"{prefix}_logits"], [output], axis=-1),
        ]

    nodes = encoder_nodes + head_nodes(FEATURES_OUTPUT, OUTPUT_NAME, "taught_clip") + \
        head_nodes(FEATURES_INPUT, WINDOW_OUTPUT, "taught_window")
    initializers = [numpy_helper.from_array(head.weights.astype(np.float32), "taught_weights"),
                    numpy_helper.from_array(head.bias.astype(np.float32), "taught_bias"),
                    numpy_helper.from_array(np.array([1e-12], np.float32), "taught_eps")]
    if axes_as_input:
        for prefix in ("taught_clip", "taught_window"):
            initializers += [numpy_helper.from_array(np.array([1], np.int64), f"{prefix}_axes"),
                             numpy_helper.from_array(np.array([-1], np.int64), f"{prefix}_axes_last")]
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used or init.name == FEATURES_INPUT]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + initializers)
    del graph.value_info[:]
    for output in graph.output:
        if output.name in (OUTPUT_NAME, WINDOW_OUTPUT):
            dims = output.type.tensor_type.shape.dim
            if len(dims) == 2:
                dims[1].ClearField("dim_param")
                dims[1].dim_value = len(card.labels)
            output.type.tensor_type.elem_type = TensorProto.FLOAT
    write_card(model, card)
    model.doc_string = f"actionrec {card.name}: {len(card.labels)} actions taught on {card.model.get('base', 'a base')}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        onnx.save(model, str(tmp))
        _check_written(tmp, head)


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
    features = np.random.default_rng(0).normal(size=(3, length, head.weights.shape[1])).astype(np.float32)
    side = frames_input.shape[2] if isinstance(frames_input.shape[2], int) else 32
    got = session.run([WINDOW_OUTPUT], {INPUT_NAME: np.zeros((1, 1, side, side, 3), np.uint8),
                                        FEATURES_INPUT: features})[0]
    expected = head.probabilities(pool(features))
    if not np.allclose(got, expected, atol=1e-4):
        raise ModelFileError("the taught model's graph disagrees with its head; nothing was written")


# --------------------------------------------------------------------------- teach


def teach(base: str | os.PathLike | Recognizer, examples: Mapping[str, Sequence[str | os.PathLike]],
          out: str | os.PathLike, *, name: str | None = None, keep_base: bool = False,
          progress: Progress | None = None) -> TeachResult:
    """Teach `base`'s encoder the actions of `examples` ({action: clip paths}) and write the new
    model to `out`. Raises TeachError for examples that cannot teach (with what to do)."""
    started = time.perf_counter()
    recognizer = base if isinstance(base, Recognizer) else Recognizer(base)
    check_base(recognizer)
    names = [check_action_name(label) for label in examples]
    if len(set(n.lower() for n in names)) != len(names):
        raise TeachError("Two actions have the same name (names are compared ignoring case). Name each once.")
    if len(names) > MAX_ACTIONS:
        raise TeachError(f"{len(names)} actions: at most {MAX_ACTIONS} can be taught at once.")
    too_many = [label for label, clips in examples.items() if len(clips) > MAX_CLIPS_PER_ACTION]
    if too_many:
        raise TeachError(f"{too_many[0]!r} has {len(examples[too_many[0]])} clips: at most {MAX_CLIPS_PER_ACTION} "
                         "an action. A few good clips teach as well as many.")
    base_rule = recognizer.card.unknown_rule
    base_means = base_rule.means if base_rule is not None and base_rule.score == FEATURE_SIMILARITY else None
    base_labels: list[str] = []
    if keep_base:
        if base_means is None:
            raise TeachError(f"{recognizer.model_path}: --keep-base needs the class means of the base's training "
                             "clips, which its card lacks (a taught model, or one exported before they were "
                             "measured). Teach from the trained base, with every action's clips, or without "
                             "--keep-base.")
        base_labels = list(recognizer.labels)
        clash = [n for n in names if n.lower() in {b.lower() for b in base_labels}]
        if clash:
            raise TeachError(f"{clash[0]!r} is one of the base's own actions: with --keep-base, name new actions "
                             "differently (or teach without --keep-base).")
    if len(names) + len(base_labels) < 2:
        raise TeachError("One action cannot be taught alone: a model tells actions apart. Give clips of at least "
                         "two actions (one may be 'nothing', you standing still).")
    features, skipped, durations = read_examples(recognizer, dict(zip(names, examples.values())), progress=progress)
    empty = [label for label in names if not features[label]]
    if empty:
        why = next((reason for path, reason in skipped.items()), "")
        raise TeachError(f"No clip of {empty[0]!r} could be read" + (f" ({why})" if why else "") +
                         ". Give it at least one clip that plays.")
    read_s = time.perf_counter() - started
    clips_by_class = [features[label] for label in names]
    fitted = time.perf_counter()
    if progress:
        progress("fitting", 0, 1)
    prototypes = base_means if keep_base else None
    head = fit_on_clips(clips_by_class, prototypes=prototypes)
    loo = leave_one_out(clips_by_class, prototypes)
    num_examples = sum(len(clips) for clips in clips_by_class)
    rule = unknown_rule(clips_by_class, base_center(base_rule), prototypes, num_examples)
    fit_s = time.perf_counter() - fitted
    card = recognizer.card
    labels = names + base_labels
    counts = {label: len(features[label]) for label in names}
    taught = {"base": card.name, "base_version": card.version, "base_sha256": sha256_of(recognizer.model_path)[:16],
              "clips": counts, "kept_base_actions": base_labels, "leave_one_out_accuracy": loo}
    stamp = datetime.now(timezone.utc)
    new_card = replace(
        card, name=name or "taught", version=stamp.strftime("%Y%m%d-%H%M%S"), labels=labels,
        model=card.model | {"num_classes": len(labels), "temporal": HEAD, "base": f"{card.name} {card.version}",
                            "taught": taught},
        dataset=f"taught: {num_examples} example clips of {len(names)} actions", validation=None,
        exported_at=stamp.isoformat(timespec="seconds"),
        clip_duration_s=round(float(np.median(durations)), 3) if durations else card.clip_duration_s,
        unknown=rule.to_dict(),
    )
    out = Path(out)
    if progress:
        progress("writing", 0, 1)
    write_taught_graph(recognizer.model_path, head, new_card, out)
    timings = {"reading": round(read_s, 2), "fitting": round(fit_s, 2), "total": round(time.perf_counter() - started, 2)}
    return TeachResult(out, new_card, counts, skipped, loo, timings)
