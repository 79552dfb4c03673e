"""Which copy of a model runs: the float model, or the int8 copy that export keeps beside it.

int8 convolutions are fast where the CPU has VNNI or AMX instructions and can be slower than float
where it has only AVX2 (measured in docs/train.md). `actionrec export` keeps an int8 copy
(MODEL.int8.onnx) only where the validation clips it was compared on show, with `CONFIDENCE`,
that it gets wrong at most `MAX_LOSS` of clips like them that the float model gets right, and
its top-1 on them is at most `MAX_DROP` below the float model's (`keeps_copy`: a one-sided upper
confidence bound on that share, so that a few dozen clips are judged as soundly as a few hundred,
and a clip both get wrong costs nothing). `choose_model_file`
then picks it on a CPU where it pays, and says which copy it picked and why, for `serve`,
`predict` and `watch` to show, with the card it read from that file's metadata: passed on to
`Recognizer(choice.path, card=choice.card)`, the file's card is read once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from actionrec.errors import ModelFileError
from actionrec.modelfile.card import ModelCard, read_card
from actionrec.modelfile.hub import resolve_model
from actionrec.runtime.resources import cpu_facts

PRECISIONS = ("auto", "fp32", "int8")
MAX_LOSS = 0.05  # of compared clips, which the float model names right and the kept int8 copy wrong
CONFIDENCE = 0.9  # that the copy's share of such clips is at most MAX_LOSS
MAX_DROP = 0.01  # of compared clips: how many fewer the kept copy may name right than the float model
KEEP_RULE = (f"kept where the one-sided {CONFIDENCE:.0%} upper confidence bound (Clopper-Pearson) on the share of "
             f"compared clips that fp32 names right and int8 wrong is at most {MAX_LOSS:.0%}, and int8's top-1 "
             f"on them is at most {MAX_DROP * 100:.0f} point below fp32's")
T = TypeVar("T")


def loss_bound(lost: int, clips: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided upper `confidence` bound (Clopper-Pearson) on the share of clips that the int8
    copy gets wrong and the float model right, where that happened on `lost` of `clips`: with none
    of 48 clips, 4.7% at 90%; of 500, 0.5%."""
    if clips < 1 or not 0 <= lost <= clips:
        raise ValueError(f"{lost} clips lost of {clips}")
    if lost == clips:
        return 1.0
    low, high = lost / clips, 1.0
    for _ in range(50):  # the share at which seeing at most `lost` becomes as unlikely as 1 - confidence
        middle = (low + high) / 2
        low, high = (middle, high) if _at_most(lost, clips, middle) > 1 - confidence else (low, middle)
    return high


def _at_most(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), 0 < p < 1."""
    return sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
                        + (n - i) * math.log1p(-p)) for i in range(k + 1))


def keeps_copy(lost: int, clips: int, gained: int = 0) -> bool:
    """Whether an int8 copy that got wrong `lost` of `clips` compared clips that the float model
    got right, and right `gained` that it got wrong, is kept (`KEEP_RULE`). The bound speaks for
    few clips (none lost of 45 or more; 1 of 77), the drop in top-1 for many (of 500, 18 lost pass
    the bound, and are kept only where the copy also gained 13)."""
    return clips > 0 and loss_bound(lost, clips) <= MAX_LOSS and lost - gained <= MAX_DROP * clips


def int8_copy_of(path: Path) -> Path:
    """Where export writes the int8 copy of the model at `path`."""
    return path.with_name(path.stem + ".int8.onnx")


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    precision: str  # "fp32" or "int8"
    why: str
    card: ModelCard  # the card of the file at `path`
    fallback: ModelChoice | None = None  # auto's float model, where the int8 copy it chose fails to load

    def describe(self) -> str:
        return f"running {self.path.name} ({self.precision}): {self.why}"


def load_chosen(choice: ModelChoice, load: Callable[[ModelChoice], T]) -> tuple[T, ModelChoice]:
    """`load(choice)`, and the choice it loaded: where "auto" chose the int8 copy and the copy cannot be
    loaded (its card reads, its graph does not), the float model instead, saying why."""
    try:
        return load(choice), choice
    except ModelFileError as exc:
        if choice.fallback is None:
            raise
        fallback = replace(choice.fallback, why=f"its int8 copy cannot be run ({exc})")
        return load(fallback), fallback


def choose_model_file(model: str | os.PathLike, precision: str = "auto", *, int8_pays: bool | None = None,
                      on_gpu: bool = False) -> ModelChoice:
    """The model file to run for `model` (a path or Hub name) at `precision`: "fp32" the file as
    given, "int8" its int8 copy, "auto" the int8 copy where the model runs on a CPU with VNNI or
    AMX and export kept one for this very model, else the file as given. A file that is itself
    int8 runs as given. "auto" runs the file as given where the int8 copy cannot be read (and says
    why); "int8" fails then, with the copy's error. Each file's card is read once, from its
    metadata alone, and comes with the choice."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    path = resolve_model(model)
    card = read_card(path)
    given = card.precision
    if given == "int8" or precision == "fp32":
        return ModelChoice(path, given, "the file given" + (" is int8" if given == "int8" else ""), card)
    copy = int8_copy_of(path)
    if precision == "int8":
        if not copy.is_file():
            raise ModelFileError(f"{copy}: no int8 copy beside {path.name}. Write one with `actionrec export "
                                 "RUN_DIR --int8`, or use --precision fp32.")
        return ModelChoice(copy, "int8", "asked for", read_card(copy))
    if not copy.is_file():
        return ModelChoice(path, given, "no int8 copy beside it", card)
    if on_gpu:
        return ModelChoice(path, given, "it runs on the GPU, where the float model is the one to run", card)
    try:
        copied = read_card(copy)
    except (ModelFileError, OSError) as exc:  # the float model still runs: the copy is only a faster way
        return ModelChoice(path, given, f"its int8 copy cannot be run ({exc})", card)
    why_not = _why_not_the_copy(card, copy, copied, int8_pays)
    if why_not:
        return ModelChoice(path, given, why_not, card)
    return ModelChoice(copy, "int8", "this CPU has VNNI or AMX, where int8 runs faster; --precision fp32 "
                                     "runs the float model", copied, fallback=ModelChoice(path, given, "", card))


def _why_not_the_copy(card: ModelCard, copy: Path, copied: ModelCard, int8_pays: bool | None) -> str | None:
    """Why `auto` runs the float model (its card `card`) rather than its int8 copy `copy` (its card
    `copied`); None where the copy is the one to run."""
    if (copied.name, copied.exported_at) != (card.name, card.exported_at):
        return f"{copy.name} was made from another export of it; `actionrec export` writes a new one"
    quantization = copied.quantization or {}
    clips, agreement = quantization.get("compared_on_clips"), quantization.get("agreement_with_fp32")
    lost = quantization.get("clips_lost")
    if lost is None and isinstance(agreement, (int, float)) and isinstance(clips, int):
        lost = round((1 - agreement) * clips)  # a copy kept before lost clips were counted: each disagreement
    if not isinstance(lost, int) or not isinstance(clips, int) or clips < 1:
        return f"{copy.name} does not say how often it agrees with it; `actionrec export` measures that"
    gained = quantization.get("clips_gained")
    if not keeps_copy(lost, clips, gained if isinstance(gained, int) else 0):
        return (f"{copy.name} got wrong {lost} of the {clips} validation clips it was compared on that the float "
                f"model got right: more than its rule allows ({KEEP_RULE})")
    if not (cpu_facts()["int8_pays"] if int8_pays is None else int8_pays):
        return f"this CPU has no VNNI or AMX, where {copy.name} would be slower; --precision int8 runs it anyway"
    return None
