"""`actionrec evaluate MODEL.onnx DATA --explain`: how faithful a model file's explanations are
(`actionrec.evaluation.faithfulness`), measured and printed. No torch."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.progress import Progress

from actionrec.cli.common import console
from actionrec.evaluation import faithfulness


def measure_explanations(recognizer, clips, unknown: list[Path], count: int) -> dict:
    """How faithful `recognizer`'s explanations are (`actionrec.evaluation.faithfulness`): deletion on
    the validation clips; pointing and splicing with clips of actions it was not taught."""
    known = [(sample.path, clips.labels[int(target)]) for sample, target in zip(clips.samples, clips.targets)]
    with Progress(console=console, transient=True) as progress:
        def step(name: str):
            task = progress.add_task(name, total=None)
            return lambda done, total: progress.update(task, completed=done, total=total)

        measured = {"deletion": faithfulness.deletion(recognizer, clips.frames, progress=step("Deletion"))}
        if len(unknown) >= 3 and known:
            with tempfile.TemporaryDirectory(prefix="actionrec-explain-") as folder:
                measured["pointing"] = faithfulness.pointing(recognizer, known, unknown, Path(folder), count=count,
                                                             progress=step("Pointing (mosaics)"))
                measured["splicing"] = faithfulness.splicing(recognizer, known, unknown, Path(folder), count=count,
                                                             progress=step("Splicing"))
    return measured


def print_explanations(model: str, measured: dict) -> None:
    d = measured["deletion"]
    console.print(f"{model}: explanations, deletion: removing the {d['removed']} highest-weighted moments lowers the "
                  f"answer more than {d['removed']} random ones on {_share(d['top_beats_random'])} of {d['clips']} "
                  f"clips, by {d['mean_drop_top']} against {d['mean_drop_random']} on average (at least twice as "
                  f"much: {'yes' if d['top_at_least_twice_random'] else 'no'})")
    if "pointing" in measured:
        p = measured["pointing"]
        console.print(f"{model}: explanations, pointing: the map's strongest quadrant is the known clip's in "
                      f"{_share(p['strongest_quadrant_known'])} of {p['mosaics']} mosaics "
                      f"({_share(p['strongest_quadrant_known_where_answered'])} of the {p['answered_known']} "
                      "answered with the known action)")
    if "splicing" in measured:
        sp = measured["splicing"]
        console.print(f"{model}: explanations, splicing: of {sp['answered_known']} of {sp['videos']} spliced videos "
                      f"answered with the known action, the strongest moment lies in the known clip in "
                      f"{_share(sp['peak_inside_known'])}; {_share(sp['positive_weight_inside_known_mean'])} of the "
                      f"positive weight does on average (at least 60% in {_share(sp['share_at_least_60pct'])})")
    elif "pointing" not in measured:
        console.print(f"{model}: explanations: pointing and splicing need --unknown (at least 3 videos of actions "
                      "the model was not taught)")


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
