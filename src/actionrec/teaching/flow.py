"""Teaching a model new actions from a few clips each, in seconds, without torch.

    from actionrec.teaching.flow import teach
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

The head and its "none of these" rule are fitted in `actionrec.teaching.head`, the graph written in
`actionrec.teaching.graph`. Needs the `onnx` package (in the `serve` extra) to write the graph; ONNX
Runtime runs it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from actionrec.errors import VideoError
from actionrec.files import sha256_of
from actionrec.modelfile.card import ModelCard
from actionrec.modelfile.unknown import FEATURE_SIMILARITY, UnknownRule
from actionrec.runtime.recognizer import Recognizer
from actionrec.teaching.graph import write_taught_graph
from actionrec.teaching.head import base_center, fit_on_clips, leave_one_out, unknown_rule
from actionrec.teaching.names import TeachError, check_action_name, name_key
from actionrec.video import SAMPLING_RULE, SAMPLING_VERSION, DecodeLimits, read_clip

MAX_ACTIONS = 50
MAX_CLIPS_PER_ACTION = 50
MAX_CLIP_S = 60.0  # an example is a short clip of the action; longer ones are refused
HEAD = "taught_motion"  # its name in the card's TEMPORAL_HEADS


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


# --------------------------------------------------------------------------- teach


def teach(base: str | os.PathLike | Recognizer, examples: Mapping[str, Sequence[str | os.PathLike]],
          out: str | os.PathLike, *, name: str | None = None, keep_base: bool = False,
          progress: Progress | None = None) -> TeachResult:
    """Teach `base`'s encoder the actions of `examples` ({action: clip paths}) and write the new
    model to `out`. Raises TeachError for examples that cannot teach (with what to do)."""
    started = time.perf_counter()
    recognizer = base if isinstance(base, Recognizer) else Recognizer(base)
    names = _checked_names(examples)
    base_labels, prototypes = _kept_base(recognizer, names, keep_base)
    if len(names) + len(base_labels) < 2:
        raise TeachError("One action cannot be taught alone: a model tells actions apart. Give clips of at least "
                         "two actions (one may be 'nothing', you standing still).")
    by_name = dict(zip(names, examples.values()))
    features, skipped, durations = read_examples(recognizer, by_name, progress=progress)
    empty = [label for label in names if not features[label]]
    if empty:  # why the first of its own clips could not be read
        why = next((skipped[str(clip)] for clip in by_name[empty[0]] if str(clip) in skipped), "")
        raise TeachError(f"No clip of {empty[0]!r} could be read" + (f" ({why})" if why else "") +
                         ". Give it at least one clip that plays.")
    read_s = time.perf_counter() - started
    clips_by_class = [features[label] for label in names]
    fitted = time.perf_counter()
    if progress:
        progress("fitting", 0, 1)
    head = fit_on_clips(clips_by_class, prototypes=prototypes)
    loo = leave_one_out(clips_by_class, prototypes)
    num_examples = sum(len(clips) for clips in clips_by_class)
    rule = unknown_rule(clips_by_class, base_center(recognizer.card.unknown_rule), prototypes, num_examples)
    fit_s = time.perf_counter() - fitted
    counts = {label: len(features[label]) for label in names}
    new_card = _taught_card(recognizer, name or "taught", counts, base_labels, loo, rule, durations)
    out = Path(out)
    if progress:
        progress("writing", 0, 1)
    write_taught_graph(recognizer.model_path, head, new_card, out)
    timings = {"reading": round(read_s, 2), "fitting": round(fit_s, 2),
               "total": round(time.perf_counter() - started, 2)}
    return TeachResult(out, new_card, counts, skipped, loo, timings)


def _checked_names(examples: Mapping[str, Sequence[str | os.PathLike]]) -> list[str]:
    """The actions' names, checked, or TeachError for names that clash or too many actions or clips."""
    names = [check_action_name(label) for label in examples]
    if len(set(map(name_key, names))) != len(names):
        raise TeachError("Two actions have the same name (names are compared ignoring case, width and letters "
                         "that look alike). Name each once.")
    if len(names) > MAX_ACTIONS:
        raise TeachError(f"{len(names)} actions: at most {MAX_ACTIONS} can be taught at once.")
    too_many = [label for label, clips in examples.items() if len(clips) > MAX_CLIPS_PER_ACTION]
    if too_many:
        raise TeachError(f"{too_many[0]!r} has {len(examples[too_many[0]])} clips: at most {MAX_CLIPS_PER_ACTION} "
                         "an action. A few good clips teach as well as many.")
    return names


def _kept_base(recognizer: Recognizer, names: list[str], keep_base: bool) -> tuple[list[str], np.ndarray | None]:
    """With `keep_base`, the base's own actions and their class means (the head keeps them from
    those alone); without, none. TeachError when the base's card lacks the means, or a new action
    has a base action's name."""
    if not keep_base:
        return [], None
    base_rule = recognizer.card.unknown_rule
    base_means = base_rule.means if base_rule is not None and base_rule.score == FEATURE_SIMILARITY else None
    if base_means is None:
        raise TeachError(f"{recognizer.model_path}: --keep-base needs the class means of the base's training "
                         "clips, which its card lacks (a taught model, or one exported before they were "
                         "measured). Teach from the trained base, with every action's clips, or without "
                         "--keep-base.")
    base_labels = list(recognizer.labels)
    clash = [n for n in names if name_key(n) in set(map(name_key, base_labels))]
    if clash:
        raise TeachError(f"{clash[0]!r} is one of the base's own actions: with --keep-base, name new actions "
                         "differently (or teach without --keep-base).")
    return base_labels, base_means


def _taught_card(recognizer: Recognizer, name: str, counts: dict[str, int], base_labels: list[str],
                 loo: float | None, rule: UnknownRule, durations: list[float]) -> ModelCard:
    """The base's card, made the taught model's: its actions, what it was taught on and from which base."""
    card = recognizer.card
    labels = list(counts) + base_labels
    num_examples = sum(counts.values())
    taught = {"base": card.name, "base_version": card.version, "base_sha256": sha256_of(recognizer.model_path)[:16],
              "clips": counts, "kept_base_actions": base_labels, "leave_one_out_accuracy": loo}
    stamp = datetime.now(UTC)
    return replace(
        card, name=name, version=stamp.strftime("%Y%m%d-%H%M%S"), labels=labels,
        model=card.model | {"num_classes": len(labels), "temporal": HEAD, "base": f"{card.name} {card.version}",
                            "taught": taught},
        dataset=f"taught: {num_examples} example clips of {len(counts)} actions", validation=None,
        exported_at=stamp.isoformat(timespec="seconds"),
        clip_duration_s=round(float(np.median(durations)), 3) if durations else card.clip_duration_s,
        unknown=rule.to_dict(), sampling=SAMPLING_RULE, sampling_version=SAMPLING_VERSION,  # its clips' sampling
    )
