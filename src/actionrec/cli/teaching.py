"""`actionrec teach`: a model of your own actions from a few clips each, on a base model's encoder.
Needs neither torch nor the server's packages (only `onnx`, in the `serve` extra, to write the file)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from actionrec.cli.common import EXIT_NOTHING_RAN, EXIT_USAGE, console, err_console, fail
from actionrec.errors import ActionrecError, ModelFileError


def teach(
    base: Path = typer.Argument(..., help="The model whose encoder to reuse: an exported model.onnx (a frozen "
                                          "ImageNet backbone's, e.g. the UCF101 recipe's, suits best)."),
    data_dir: Path = typer.Argument(..., help="One folder per action, each with a few clips of it (2-4 s; "
                                              "3-5 clips an action is plenty)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the new model file (.onnx)."),
    name: str | None = typer.Option(None, help="The new model's name (default: 'taught')."),
    keep_base: bool = typer.Option(False, "--keep-base", help="Also keep the base's own actions (from the class "
                                                               "means its card carries)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was taught as one JSON object."),
) -> None:
    """Teach new actions from a few clips each: a new head on BASE's frame features, with its own
    "none of these", written as one model file that predict, watch and serve take. Seconds, on a CPU."""
    try:
        from actionrec.teaching.flow import examples_in_folder
        from actionrec.teaching.flow import teach as teach_model
    except ImportError as exc:
        fail(f"teaching needs the {exc.name} package: install it with `pip install 'actionrec[serve]'`.")
    if out.suffix != ".onnx":
        fail(f"--out {out}: the model file's name must end in .onnx.", EXIT_USAGE)
    try:
        examples = examples_in_folder(data_dir)
    except ActionrecError as exc:
        fail(str(exc), EXIT_USAGE)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console,
                        transient=True, disable=not err_console.is_terminal)
    task = progress.add_task("Reading clips", total=sum(len(clips) for clips in examples.values()))

    def report(stage: str, done: int, total: int) -> None:
        if stage == "reading":
            progress.update(task, completed=done)
        else:
            progress.update(task, description=stage.capitalize())

    try:
        with progress:
            result = teach_model(base, examples, out, name=name, keep_base=keep_base, progress=report)
    except ModelFileError as exc:
        fail(str(exc), EXIT_NOTHING_RAN)
    except ActionrecError as exc:
        fail(str(exc))
    if as_json:
        console.print_json(json.dumps(result.summary()))
        return
    for why in result.skipped.values():
        err_console.print(f"[yellow]skipped[/yellow] {escape(why)}")
    counts = ", ".join(f"{label} ({count})" for label, count in result.clips.items())
    console.print(escape(f"Taught {len(result.clips)} actions from {sum(result.clips.values())} clips: {counts}"))
    if result.card.model["taught"]["kept_base_actions"]:
        console.print(f"Kept the base's {len(result.card.model['taught']['kept_base_actions'])} actions too.")
    if result.loo_accuracy is not None:
        console.print(f"Leaving each clip out in turn, the others named it right {result.loo_accuracy:.0%} of the "
                      "time (an estimate from few clips: try it on new ones).")
    rule = result.card.unknown_rule  # a taught card always has one
    if rule is not None:
        console.print(f"None of these: answers under {rule.threshold:.3f} in similarity to the taught clips are "
                      "flagged uncertain.")
    console.print(escape(f"Wrote {out} in {result.timings_s['total']:.1f} s. Try it: actionrec predict {out} "
                         "VIDEO, or actionrec serve " + str(out)))
