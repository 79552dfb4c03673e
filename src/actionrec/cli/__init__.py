"""The `actionrec` command. Training commands import torch only when they run; `predict` and `watch`
need neither torch nor the server's packages.

Defaults live with what they configure (`TrainConfig`, `ServerSettings`); options a user leaves
out are not passed on, so those defaults, recipes, settings files and ACTIONREC_* variables apply.

Every command, by the module that defines it (tests/cli/test_cli.py checks this table against the
commands registered below):

    training.py      synth, data ucf101, train, evaluate, export
    predicting.py    predict, watch
    serving.py       serve, demo
    teaching.py      teach
    sharing.py       push
    benchmarking.py  benchmark, benchmark-inputs, benchmark-train, benchmark-serving, benchmark-regions
"""

from __future__ import annotations

import os

import typer

from actionrec.cli import benchmarking, predicting, serving, sharing, teaching, training
from actionrec.cli.common import console

app = typer.Typer(
    help="Video action recognition: train MobileNetV2 + LSTM, export to ONNX, predict and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for command in (training.synth, training.train, training.evaluate, training.export, predicting.predict,
                predicting.watch, teaching.teach, sharing.push):
    app.command()(command)
app.command("serve", context_settings=serving.SERVE_CONTEXT)(serving.serve)  # its options are made, see serving.py
for command in (serving.demo, benchmarking.benchmark):
    app.command()(command)
app.command("benchmark-inputs")(benchmarking.benchmark_inputs)
app.command("benchmark-train")(benchmarking.benchmark_train)
app.command("benchmark-serving")(benchmarking.benchmark_serving)
app.command("benchmark-regions")(benchmarking.benchmark_regions)
app.add_typer(training.data_app, name="data")


def _version(value: bool) -> None:
    if value:
        from actionrec import __version__

        console.print(f"actionrec {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Video action recognition: train MobileNetV2 + LSTM, export to ONNX, predict and serve."""


def main() -> None:
    """Where the `actionrec` command starts: settings for the whole process belong here."""
    # OpenMP threads that spin while waiting make PyTorch on a small, busy machine 10x slower
    # (measured here: MobileNetV2 training steps took 7.7 s instead of 0.85 s on 2 cores with one
    # other busy process). OpenMP reads this once, when torch loads, which is later than here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()
