"""Commands that make models: the synthetic dataset, UCF101, training, evaluation, export."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from actionrec.cli.common import EXIT_USAGE, console, fail, needs_training_extra
from actionrec.cli.config_options import config_options
from actionrec.datasets import DatasetKind
from actionrec.errors import ActionrecError
from actionrec.modelfile.unknown import SIMILARITY_AND_CONFIDENCE
from actionrec.training.config import TrainConfig, read_settings


def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write the dataset into (one sub-folder per class)."),
    clips_per_class: int = typer.Option(40, help="Clips generated for each class."),
    seed: int = typer.Option(0, help="Same seed, same videos."),
    width: int = typer.Option(128),
    height: int = typer.Option(96),
) -> None:
    """Generate the synthetic action dataset: real H.264 MP4 clips, folder per class, offline."""
    from rich.progress import Progress

    from actionrec.datasets import synth as synthetic

    with Progress(console=console) as progress:
        task = progress.add_task("Generating clips", total=clips_per_class * len(synthetic.CLASSES))
        paths = synthetic.generate_dataset(
            out_dir, clips_per_class=clips_per_class, seed=seed, width=width, height=height,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    console.print(f"{len(paths)} clips of {len(synthetic.CLASSES)} classes in {out_dir}")


data_app = typer.Typer(help="Get and check datasets.", no_args_is_help=True)


@data_app.command("ucf101")
def data_ucf101(
    root: Path = typer.Option(..., "--root", help="Folder for UCF101 (archive, UCF-101/, ucfTrainTestlist/)."),
    download: bool = typer.Option(False, "--download", help="Fetch the official archive (~6.9 GB) and split files."),
    archive: Path | None = typer.Option(None, help="A UCF101.rar you already have (no download)."),
    splits: Path | None = typer.Option(None, help="A UCF101TrainTestSplits-RecognitionTask.zip you already have."),
    check_videos: bool = typer.Option(True, help="Open every clip to find unreadable ones (takes a minute)."),
) -> None:
    """Download (optional), unpack and check UCF101; prints what is missing or unreadable."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from actionrec.datasets import ucf101

    try:
        if download and not (archive or splits):
            with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                          console=console) as progress:
                task = progress.add_task("Downloading UCF101", total=None)
                ucf101.download(root, progress=lambda done, total: progress.update(task, completed=done, total=total))
        needs_unpacking = not (root / ucf101.VIDEOS_DIR).is_dir() or not (root / ucf101.LISTS_DIR).is_dir()
        if archive or splits or (needs_unpacking and (root / ucf101.ARCHIVE_NAME).exists()):
            console.print("Unpacking (the archive takes several minutes)...")
            ucf101.extract(root, archive=archive, splits=splits)
        with Progress(console=console) as progress:
            task = progress.add_task("Checking clips", total=None)
            report = ucf101.validate(root, open_videos=check_videos,
                                     progress=lambda done, total: progress.update(task, completed=done, total=total))
    except (ActionrecError, ValueError, OSError) as exc:
        fail(str(exc))
    console.print(report.summary())
    if not report.ok:
        raise typer.Exit(1)



@config_options(TrainConfig, after="out")
def train(
    given: dict[str, Any],
    config: Path | None = typer.Option(None, "--config", help="Settings from a file: TOML (TrainConfig's names) "
                                                                  "or a run's config.json. Flags given here win.",
                                          show_default=False),
    resume: bool = typer.Option(False, help="Continue a killed run from its last completed epoch, with the "
                                            "settings in its config.json."),
) -> None:
    """Train a model on a folder-per-class dataset or UCF101."""
    config_ = _train_config(given, config, resume)
    needs_training_extra()
    from actionrec.training.train import train as run_training

    try:
        run_training(config_, resume=resume, console=console)
    except (ActionrecError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; the last completed epoch is saved: continue with `actionrec train --out "
             f"{config_.out} --resume`.", 130)


def _train_config(given: dict[str, Any], config: Path | None, resume: bool) -> TrainConfig:
    """The settings of --config (or, resuming, the run's own config.json), with the flags `given` on top."""
    try:
        settings = read_settings(config) if config else {}
        run_config = Path(given.get("out") or settings.get("out") or "") / "config.json"
        if resume and not config and run_config.is_file():
            settings = read_settings(run_config)  # the run's own settings; flags given here still win
        settings |= given
        for needed, flag in (("data_dir", "DATA_DIR"), ("out", "--out")):
            if not settings.get(needed):
                fail(f"{flag} is needed (or a --config that gives it, or --resume of a run that has it).",
                     EXIT_USAGE)
        return TrainConfig(**settings)
    except ValueError as exc:
        fail(str(exc))


def evaluate(
    target: Path = typer.Argument(..., help="A run directory made by `actionrec train`, or an exported MODEL.onnx "
                                            "(evaluated by ONNX Runtime alone: no torch needed)."),
    data_dir: Path | None = typer.Argument(None, help="The dataset whose validation clips to evaluate on (needed "
                                                         "for a model file; for a run, its own by default).",
                                              show_default=False),
    data: Path | None = typer.Option(None, "--data", help="The same as DATA_DIR, for a run.", hidden=True),
    compare: list[Path] = typer.Option([], "--compare", help="Model files to evaluate on the same clips (e.g. "
                                       "the int8 copy): their accuracy and agreement with the first."),
    dataset: DatasetKind = typer.Option("folder", help="Kind of DATA_DIR (model files)."),
    split: int = typer.Option(1, help="UCF101 split (model files)."),
    val_fraction: float = typer.Option(0.2, help="Folder datasets without list files: the validation share the "
                                                 "model was trained with (model files)."),
    seed: int = typer.Option(0, help="The seed the model was trained with, which drew the split (model files)."),
    limit: int | None = typer.Option(None, help="At most this many clips, spread over the classes (model files)."),
    unknown: list[Path] = typer.Option([], "--unknown", help="Videos (files or folders) of actions the model was not "
                                                              "taught: how many of them, and of the validation clips, "
                                                              "it flags uncertain (model files)."),
    timelines: int = typer.Option(0, help="Also join this many sets of 4 validation clips of different actions end "
                                          "to end and measure their timelines: time labelled right, boundary "
                                          "errors (model files)."),
    seed_timelines: int = typer.Option(0, help="Which clips the timelines join.", hidden=True),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (model files)."),
    explain: bool = typer.Option(False, "--explain", help="Also measure how faithful explanations are: deletion on "
                                 "the validation clips; with --unknown, pointing (2 x 2 mosaics) and splicing "
                                 "(model files; see docs/explain.md)."),
    explain_count: int = typer.Option(24, help="--explain: how many mosaics and how many spliced videos.", min=1),
) -> None:
    """Top-1/top-5, mean class accuracy, confusion; for a run writes metrics.json and report.html."""
    from actionrec.modelfile.hub import is_hub_name

    if target.suffix == ".onnx" or is_hub_name(target):
        _evaluate_model_files([target, *compare], data_dir or data, dataset, split, val_fraction, seed, limit, as_json,
                              unknown, timelines, seed_timelines, explain_count if explain else 0)
        return
    needs_training_extra()
    from actionrec.training.run_evaluation import evaluate_run

    try:
        metrics, report = evaluate_run(target, data_dir=data_dir or data, console=console)
    except (ActionrecError, ValueError) as exc:
        fail(str(exc))
    table = Table(title=f"{target} on {metrics['num_clips']} clips")
    for column in ("top-1", "top-5", "mean class acc"):
        table.add_column(column, justify="right")
    table.add_row(f"{metrics['top1']:.1%}", f"{metrics['top5']:.1%}", f"{metrics['mean_class_accuracy']:.1%}")
    console.print(table)
    worst = Table(title="Classes, worst first")
    for column in ("class", "clips", "accuracy", "most confused with"):
        worst.add_column(column)
    for row in metrics["per_class"][:10]:
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.0%}"
        worst.add_row(row["label"], str(row["support"]), acc, row.get("top_confusion") or "")
    console.print(worst)
    console.print(f"Report: {report}")


def _evaluate_model_files(models: list[Path], data_dir: Path | None, dataset: str, split: int,
                          val_fraction: float, seed: int, limit: int | None, as_json: bool,
                          unknown: Sequence[Path] = (), timelines: int = 0, seed_timelines: int = 0,
                          explain_count: int = 0) -> None:
    """Torch-free: model files through ONNX Runtime on the dataset's validation clips."""
    import json

    if data_dir is None:
        fail("DATA_DIR is needed to evaluate a model file: the dataset whose validation clips to use.", EXIT_USAGE)
    try:
        results = _measure_model_files(models, data_dir, dataset, split, val_fraction, seed, limit, unknown,
                                       timelines, seed_timelines, explain_count)
    except (ActionrecError, ValueError, OSError) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(results, indent=2))
        return
    print_comparison(results)
    for entry in results["models"]:
        _print_unknown_and_timelines(entry)


def _measure_model_files(models: list[Path], data_dir: Path, dataset: str, split: int, val_fraction: float, seed: int,
                         limit: int | None, unknown: Sequence[Path], timelines: int, seed_timelines: int,
                         explain_count: int = 0) -> dict:
    import tempfile

    from rich.progress import Progress

    from actionrec.cli.predicting import expand
    from actionrec.evaluation.model_files import (
        evaluate_files,
        joined_timelines,
        read_clips,
        unknown_flags,
        validation_clips,
    )
    from actionrec.runtime.recognizer import Recognizer

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Reading validation clips", total=None)
        recognizers = [Recognizer(model) for model in models]
        clips = validation_clips(data_dir, recognizers[0], dataset=dataset, split=split,
                                 val_fraction=val_fraction, seed=seed, limit=limit,
                                 progress=lambda done, total: progress.update(task, completed=done, total=total))
    results = evaluate_files(recognizers, clips)
    if unknown:
        others = expand([str(path) for path in unknown])
        for recognizer, entry in zip(recognizers, results["models"]):
            readable = read_clips(others, recognizer)
            if not readable:
                fail(f"none of the {len(others)} videos of --unknown could be read.")
            entry["unknown"] = unknown_flags(recognizer, clips, readable)
    if timelines:
        with tempfile.TemporaryDirectory(prefix="actionrec-timelines-") as folder, \
                Progress(console=console, transient=True) as progress:
            task = progress.add_task("Timelines of joined clips", total=timelines)
            for recognizer, entry in zip(recognizers, results["models"]):
                entry["timelines"] = joined_timelines(
                    recognizer, clips, Path(folder), count=timelines, seed=seed_timelines,
                    progress=lambda done, total: progress.update(task, completed=done, total=total))
    if explain_count:
        from actionrec.cli.explaining import measure_explanations

        others = expand([str(path) for path in unknown]) if unknown else []
        for recognizer, entry in zip(recognizers, results["models"]):
            entry["explanations"] = measure_explanations(recognizer, clips, others, explain_count)
    return results


def _print_unknown_and_timelines(entry: dict) -> None:
    if "unknown" in entry:
        flags, fixed = entry["unknown"], entry["unknown"]["fixed_0.5"]
        console.print(f"{entry['model']}: flagged uncertain ({flags['rule']['score']} under "
                      f"{flags['rule']['threshold']}): {_share(flags['known_flagged'])} of {flags['known_clips']} "
                      f"validation clips (those the threshold was measured on, if it was measured on this "
                      f"dataset), {_share(flags['unknown_flagged'])} of {flags['unknown_clips']} clips of other "
                      f"actions (a fixed 0.5 confidence: {_share(fixed['known_flagged'])} and "
                      f"{_share(fixed['unknown_flagged'])}); area under the ROC curve {flags['auroc']} "
                      f"(the top probability: {fixed['auroc']})")
    if "timelines" in entry:
        for name, words in (("evidence", "timelines"), ("windows", "windows alone (the rule before)")):
            t = entry["timelines"][name]
            console.print(f"{entry['model']}: {words}: {_share(t['time_right'])} of the time right (worst "
                          f"video {_share(t['worst_video_time_right'])}); boundaries off by "
                          f"{t['boundary_error_median_s']} s (median), {t['boundary_error_max_s']} s at most, "
                          f"{_share(t['boundaries_within_0.5s'])} within 0.5 s")


    if "explanations" in entry:
        from actionrec.cli.explaining import print_explanations

        print_explanations(entry["model"], entry["explanations"])


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def print_comparison(results: dict) -> None:
    table = Table(title=f"on {results['num_clips']} validation clips" +
                  (f" ({len(results['failed'])} unreadable, skipped)" if results["failed"] else ""))
    for column in ("model", "top-1", "top-5", "mean class acc", "agrees with the first"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for entry in results["models"]:
        agreement = entry.get("agreement_with_first")
        table.add_row(entry["model"], *(f"{entry[key]:.1%}" if entry[key] is not None else "-"
                                        for key in ("top1", "top5", "mean_class_accuracy")),
                      "-" if agreement is None else f"{agreement:.1%}")
    console.print(table)


def export(
    run_dir: Path = typer.Argument(..., help="A run directory made by `actionrec train`."),
    out: Path | None = typer.Option(None, help="Where to write (default RUN_DIR/model.onnx)."),
    int8: bool | None = typer.Option(None, "--int8/--no-int8", show_default=False, help="Also write an int8 copy "
                                        "(MODEL.int8.onnx), calibrated on the run's training clips and compared "
                                        "with the float model on its validation clips; it is kept only where they "
                                        "show (90% confidence) that it gets wrong at most 5% of clips that the "
                                        "float model gets right. Default: yes, where the run's clips can be read."),
    calibration_clips: int = typer.Option(64, min=1, help="Training clips the int8 copy's activation ranges are "
                                                   "measured on."),
    compare_clips: int = typer.Option(500, help="Validation clips fp32 and int8 are compared on (0: all), and the "
                                                "unknown threshold is measured on."),
    unknown: bool = typer.Option(True, "--unknown/--no-unknown", help="Measure, on the run's clips, when an answer "
                                 "shows none of the model's actions (the threshold of `uncertain`)."),
) -> None:
    """Export to ONNX (frames in, probabilities out, labels and settings in the metadata), checked against PyTorch."""
    needs_training_extra()

    from actionrec.runtime.precision import int8_copy_of
    from actionrec.training.runs import RunDir

    try:
        run = RunDir(run_dir)
        path = run.export(out)
        int8_copy_of(path).unlink(missing_ok=True)  # a copy of an earlier export: never served beside this one
        console.print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB); ONNX Runtime matches PyTorch.")
        if unknown:
            _measure_unknown(run, path, compare_clips or None)
        if int8 is not False:
            _export_int8(run, path, calibration_clips, compare_clips, asked=int8 is True)
    except (ActionrecError, ValueError) as exc:
        fail(str(exc))


def _export_int8(run, path: Path, calibration_clips: int, compare_clips: int, asked: bool) -> None:
    """The int8 copy, kept where it loses few clips against the float model; by default, a warning
    where the run's clips cannot be read (with --int8, an error)."""
    from rich.progress import Progress

    from actionrec.runtime.precision import CONFIDENCE, MAX_DROP, MAX_LOSS, loss_bound

    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("Reading training clips to calibrate on, then validation clips", total=None)
            quantized, comparison = run.export_int8(
                path, calibration_clips=calibration_clips, compare_clips=compare_clips or None,
                progress=lambda done, total: progress.update(task, completed=done, total=total))
    except (ActionrecError, OSError) as exc:
        if asked:
            raise
        console.print(f"[yellow]warning:[/yellow] no int8 copy written ({exc}). It is calibrated on the run's "
                      f"training clips and compared on its validation clips, read from {run.config.data_dir}: "
                      f"with the dataset there, `actionrec export {run.path} --int8` writes it.")
        return
    print_comparison(comparison)
    agreement = comparison["models"][1].get("agreement_with_first")
    if quantized is None and agreement is None:
        console.print("No int8 copy kept: no validation clip could be compared. The float model is served everywhere.")
        return
    if quantized is None:
        copy, clips = comparison["models"][1], comparison["num_clips"]
        lost, gained = copy["lost_vs_first"], copy["gained_vs_first"]
        why = (f"its top-1 is {(lost - gained) / clips:.1%} below the float model's, more than {MAX_DROP:.0%}"
               if loss_bound(lost, clips) <= MAX_LOSS else
               f"{clips} clips cannot show, with {CONFIDENCE:.0%} confidence, that it loses at most {MAX_LOSS:.0%} "
               "of clips like them")
        console.print(f"No int8 copy kept: it names the float model's action on {agreement:.1%} of {clips} validation "
                      f"clips, gets wrong {lost} that it gets right and right {gained} that it gets wrong; {why}. "
                      "The float model is served everywhere.")
        return
    from actionrec.modelfile.card import read_card

    calibrated_on = (read_card(quantized).quantization or {}).get("calibrated_on", "training clips")
    console.print(f"Wrote {quantized} ({quantized.stat().st_size / 1e6:.1f} MB), int8, calibrated on "
                  f"{calibrated_on}, agreeing with the float model on {agreement:.1%} of "
                  f"{comparison['num_clips']} validation clips (it may lose up to {comparison['loss_bound']:.1%} of "
                  f"clips like them, {CONFIDENCE:.0%} bound); serve, predict and watch run it where this CPU has "
                  "VNNI or AMX (--precision fp32 keeps the float model).")


def _measure_unknown(run, path: Path, limit: int | None) -> None:
    """The unknown threshold, measured and written into the card; a warning where it cannot be."""
    from rich.progress import Progress

    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("Measuring the unknown threshold", total=None)
            rule = run.measure_unknown(path, limit=limit,
                                       progress=lambda done, total: progress.update(task, completed=done, total=total))
    except (ActionrecError, ValueError, OSError) as exc:
        console.print(f"[yellow]warning:[/yellow] the unknown threshold was not measured ({exc}); answers under "
                      "0.5 confidence are flagged uncertain.")
        return
    score = "similarity and confidence together" if rule.score == SIMILARITY_AND_CONFIDENCE else "feature similarity"
    console.print(f"Unknown actions: answers scoring under {rule.threshold:.3f} in {score} are flagged "
                  f"uncertain ({rule.known_flagged:.1%} of {rule.calibrated_on} are).")
