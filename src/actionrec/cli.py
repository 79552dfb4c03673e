"""The `actionrec` command. Training commands import torch lazily; `predict` and `serve` never do.

Defaults live with what they configure (`TrainConfig`, `ServerSettings`); options here that a
user leaves out are not passed on, so those defaults, recipes and ACTIONREC_* variables apply.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from actionrec.errors import ActionrecError
from actionrec.training.config import TrainConfig

app = typer.Typer(
    help="Video action recognition: train MobileNetV2 + LSTM, export to ONNX, predict and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _needs_training_extra() -> None:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        _fail("this command needs PyTorch: install the training extra with `pip install 'actionrec[train]'`.")


@app.command()
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
app.add_typer(data_app, name="data")


@data_app.command("ucf101")
def data_ucf101(
    root: Path = typer.Option(..., "--root", help="Folder for UCF101 (archive, UCF-101/, ucfTrainTestlist/)."),
    download: bool = typer.Option(False, "--download", help="Fetch the official archive (~6.9 GB) and split files."),
    archive: Optional[Path] = typer.Option(None, help="A UCF101.rar you already have (no download)."),
    splits: Optional[Path] = typer.Option(None, help="A UCF101TrainTestSplits-RecognitionTask.zip you already have."),
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
        _fail(str(exc))
    console.print(report.summary())
    if not report.ok:
        raise typer.Exit(1)


def _default(name: str) -> object:
    return TrainConfig.default(name)


@app.command()
def train(
    data_dir: Path = typer.Argument(..., help="Dataset root: folder per class, or the UCF101 root with --dataset ucf101."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write the model, config and metrics into."),
    dataset: str = typer.Option(_default("dataset"), help="folder | ucf101"),
    split: int = typer.Option(_default("split"), help="UCF101 official split (1, 2 or 3)."),
    val_fraction: float = typer.Option(_default("val_fraction"), help="Folder datasets without train.txt/test.txt: share held out."),
    epochs: Optional[int] = typer.Option(None, help="Default 15; 20 for the UCF101 recipe."),
    frames: int = typer.Option(_default("frames"), help="Frames sampled per clip."),
    image_size: int = typer.Option(_default("image_size"), help="Frame size in pixels (square)."),
    batch_size: Optional[int] = typer.Option(None, help="Default 32; 64 for the UCF101 recipe."),
    lr: float = typer.Option(_default("lr"), help="Peak learning rate (AdamW, warm-up then cosine decay)."),
    weight_decay: float = typer.Option(_default("weight_decay")),
    backbone_weights: str = typer.Option(_default("backbone_weights"), help="imagenet | none | PATH to MobileNetV2 weights."),
    temporal: str = typer.Option(_default("temporal"), help="lstm | mean (order-blind baseline)."),
    finetune: bool = typer.Option(_default("finetune"), help="Train the backbone too (implied by --backbone-weights none)."),
    width_mult: float = typer.Option(_default("width_mult"), help="MobileNetV2 width multiplier (1.0 for ImageNet weights)."),
    hidden_size: int = typer.Option(_default("hidden_size"), help="LSTM / MLP hidden size."),
    dropout: float = typer.Option(_default("dropout")),
    train_views: Optional[int] = typer.Option(None, help="Temporal clips cached per training video; one is drawn each epoch. Default 1; 2 for UCF101."),
    test_views: Optional[int] = typer.Option(None, help="Clips averaged per validation video. Default 1; 2 for UCF101."),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Mirror random training views. Default off; on for UCF101 (not where left/right is the label)."),
    seed: int = typer.Option(_default("seed")),
    cache_dir: Optional[Path] = typer.Option(None, help="Where cached frames/features go (default ~/.cache/actionrec or $ACTIONREC_CACHE)."),
    resume: bool = typer.Option(False, help="Continue a killed run from its last completed epoch."),
) -> None:
    """Train a model on a folder-per-class dataset or UCF101."""
    given = {name: str(value) if isinstance(value, Path) else value
             for name, value in locals().items() if name != "resume" and value is not None}
    _needs_training_extra()
    from actionrec.training.train import train as run_training

    try:
        config = TrainConfig(**given)
        run_training(config, resume=resume, console=console)
    except (ActionrecError, ValueError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; the last completed epoch is saved: continue with the same command and --resume.", 130)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory made by `actionrec train`."),
    data: Optional[Path] = typer.Option(None, "--data", help="Evaluate on this dataset's validation split instead."),
) -> None:
    """Top-1/top-5, mean class accuracy, confusion matrix; writes metrics.json and report.html."""
    _needs_training_extra()
    from actionrec.training.evaluate import evaluate_run

    try:
        metrics, report = evaluate_run(run_dir, data_dir=data, console=console)
    except (ActionrecError, ValueError) as exc:
        _fail(str(exc))
    table = Table(title=f"{run_dir} on {metrics['num_clips']} clips")
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


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory made by `actionrec train`."),
    out: Optional[Path] = typer.Option(None, help="Where to write (default RUN_DIR/model.onnx)."),
) -> None:
    """Export to ONNX (frames in, probabilities out, labels and settings in the metadata), checked against PyTorch."""
    _needs_training_extra()
    from actionrec.training.runs import RunDir

    try:
        path = RunDir(run_dir).export(out)
    except (ActionrecError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB); ONNX Runtime matches PyTorch.")


@app.command()
def predict(
    model: Path = typer.Argument(..., help="An exported model.onnx."),
    videos: List[Path] = typer.Argument(..., help="Video files."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="How many actions to list."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per video, one per line."),
    segments: bool = typer.Option(False, help="Also say where in the video each action happens."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads (default: all cores)."),
) -> None:
    """Say which action each video shows. Exit code 1 if any video could not be read."""
    from actionrec.errors import VideoError
    from actionrec.inference import Recognizer

    try:
        recognizer = Recognizer(model, threads=threads)
    except ActionrecError as exc:
        _fail(str(exc))
    failed = 0
    for video in videos:
        try:
            result = recognizer.predict(video, top_k=top_k, segments=segments)
        except Exception as exc:  # one file's problem never stops the others
            failed += 1
            reason = exc.reason if isinstance(exc, VideoError) else "internal_error"
            message = str(exc) if isinstance(exc, VideoError) else f"{video}: {type(exc).__name__}: {exc}"
            if as_json:
                print(json.dumps({"file": str(video), "error": message, "reason": reason}))
            else:
                err_console.print(f"[red]{video}[/red]: {message}")
            continue
        if as_json:
            print(json.dumps({"file": str(video), **result.to_dict()}))
            continue
        flag = "  [yellow](uncertain)[/yellow]" if result.uncertain else ""
        console.print(f"[bold]{video}[/bold]: {result.action} ({result.confidence:.1%}){flag}")
        for entry in result.top_k[1:]:
            console.print(f"    {entry['action']:<28} {entry['confidence']:.1%}")
        for segment in result.segments or []:
            console.print(f"    {segment.start_s:7.2f}-{segment.end_s:7.2f} s  {segment.action} ({segment.confidence:.0%})")
        for warning in result.warnings:
            console.print(f"    [yellow]warning:[/yellow] {warning}")
    if failed:
        raise typer.Exit(1)


@app.command()
def watch(
    model: Path = typer.Argument(..., help="An exported model.onnx."),
    source: str = typer.Argument(..., help="A camera (0, /dev/video0), a stream URL (rtsp://, http://...) or a file."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per answer and per event."),
    realtime: bool = typer.Option(True, "--realtime/--as-fast-as-possible",
                                  help="Play a file at its own speed (default), or read it as fast as possible."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many actions each JSON answer lists."),
    update_interval: float = typer.Option(0.5, help="Longest time between two answers, in seconds."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads (default: all cores)."),
) -> None:
    """Recognize actions live: a rolling answer as the source plays. Ctrl-C stops."""
    from actionrec.inference import Recognizer
    from actionrec.live import LiveAnswer, watch as watch_source

    seen = {"answers": 0, "action": None}

    def on_answer(answer: LiveAnswer) -> None:
        if as_json:
            print(json.dumps(answer.to_dict()), flush=True)
        elif answer.action != seen["action"]:
            flag = "  [yellow](uncertain)[/yellow]" if answer.uncertain else ""
            console.print(f"{answer.time_s:8.1f} s  [bold]{answer.action}[/bold] ({answer.confidence:.0%}){flag}")
        seen["answers"] += 1
        seen["action"] = answer.action

    def on_event(kind: str, text: str) -> None:
        if as_json:
            print(json.dumps({"event": kind, "detail": text}), flush=True)
        else:
            err_console.print(f"[dim]{text}[/dim]")

    try:
        recognizer = Recognizer(model, threads=threads)
        watch_source(recognizer, source, on_answer, on_event, realtime=realtime, update_interval_s=update_interval,
                     top_k=top_k)
    except (ActionrecError, ValueError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        on_event("stopped", f"stopped after {seen['answers']} answers")


@app.command()
def benchmark(
    model: Path = typer.Argument(..., help="An exported model.onnx."),
    videos: List[Path] = typer.Argument(..., help="Videos to measure on (`actionrec benchmark-inputs` makes some)."),
    repeats: int = typer.Option(3, help="Runs per measurement; medians are reported."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads (default: all cores)."),
    server: bool = typer.Option(False, "--server", help="Also measure a real server's memory answering timelines."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Time answers and timelines against sequential decoding and their floors, on this machine."""
    from actionrec.benchmark import benchmark_server, benchmark_video, machine
    from actionrec.inference import Recognizer

    try:
        recognizer = Recognizer(model, threads=threads)
        results = {"machine": machine(), "model": str(model), "threads": threads or "onnxruntime default",
                   "videos": [benchmark_video(recognizer, video, repeats) for video in videos]}
        if server:
            results["server"] = benchmark_server(model, videos)
    except (ActionrecError, ValueError, OSError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(results, indent=2))
        return
    console.print(f"{results['machine']}; {model} ({recognizer.spec.num_frames} x {recognizer.spec.image_size}px)")
    for result in results["videos"]:
        info = result["info"]
        console.print(f"\n[bold]{result['video']}[/bold]: {info['width']}x{info['height']}, {info['duration_s']} s, "
                      f"{info['num_frames']} frames, {result['keyframes']} keyframes")
        table = Table("measured", "seconds (median)", box=None)
        for name, seconds in result["seconds"].items():
            table.add_row(name.replace("_", " "), f"{seconds:.3f}")
        console.print(table)
        for name, ratio in result["ratios"].items():
            console.print(f"  {name:<40} {ratio:6.2f}x")
    if server:
        memory = results["server"]
        console.print(f"\nserver with {memory['workers']} decode workers: idle {memory['idle_mb']['server']:.0f} MB "
                      f"(with workers {memory['idle_mb']['with_workers']:.0f} MB)")
        for request in memory["requests"]:
            console.print(f"  timeline of {request['video']}: {request['status']} in {request['seconds']} s, peak "
                          f"{request['peak_server_mb']:.0f} MB (with workers {request['peak_with_workers_mb']:.0f} MB)")
        console.print(f"  idle after: {memory['idle_after_mb']['server']:.0f} MB "
                      f"(with workers {memory['idle_after_mb']['with_workers']:.0f} MB)")


@app.command("benchmark-inputs")
def benchmark_inputs(
    folder: Path = typer.Argument(Path("benchmark-inputs"), help="Where to write them (kept for the next run)."),
    minutes: float = typer.Option(10.0, help="Length of the long video."),
    height: int = typer.Option(720, help="Height of the long video (16:9)."),
) -> None:
    """Make the benchmark's inputs: a UCF101-shaped untrained model (16 x 224), a long H.264 video, a short clip."""
    _needs_training_extra()
    from actionrec.benchmark import prepare_inputs

    paths = prepare_inputs(folder, minutes=minutes, height=height)
    console.print("\n".join(f"{name}: {path}" for name, path in paths.items()))
    console.print(f"Then: actionrec benchmark {paths['model']} {paths['short']} {paths['long']} --server")


def _setting_help(name: str, text: str = "") -> str:
    from actionrec.serve.settings import ENV_PREFIX, ServerSettings

    field = ServerSettings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    shown = "none" if default in (None, []) else default
    return f"{text or (field.description or '').capitalize()} [default: {shown}; env {ENV_PREFIX}{name.upper()}]"


@app.command()
def serve(
    model: Optional[Path] = typer.Argument(None, help="An exported model.onnx [env ACTIONREC_MODEL].", show_default=False),
    host: Optional[str] = typer.Option(None, help=_setting_help("host"), show_default=False),
    port: Optional[int] = typer.Option(None, help=_setting_help("port", "Port to listen on"), show_default=False),
    max_upload_mb: Optional[float] = typer.Option(None, help=_setting_help("max_upload_mb"), show_default=False),
    max_duration_s: Optional[float] = typer.Option(None, help=_setting_help("max_duration_s"), show_default=False),
    decode_timeout_s: Optional[float] = typer.Option(None, help=_setting_help("decode_timeout_s"), show_default=False),
    workers: Optional[int] = typer.Option(None, help=_setting_help("workers"), show_default=False),
    threads: Optional[int] = typer.Option(None, help=_setting_help("threads"), show_default=False),
    max_pending: Optional[int] = typer.Option(None, help=_setting_help("max_pending"), show_default=False),
    uncertain_below: Optional[float] = typer.Option(None, help=_setting_help("uncertain_below"), show_default=False),
    max_uploads: Optional[int] = typer.Option(None, help=_setting_help("max_uploads"), show_default=False),
    upload_idle_timeout_s: Optional[float] = typer.Option(None, help=_setting_help("upload_idle_timeout_s"),
                                                          show_default=False),
    upload_min_kbps: Optional[float] = typer.Option(None, help=_setting_help("upload_min_kbps"), show_default=False),
    header_timeout_s: Optional[float] = typer.Option(None, help=_setting_help("header_timeout_s"),
                                                     show_default=False),
    drain_timeout_s: Optional[float] = typer.Option(None, help=_setting_help("drain_timeout_s"), show_default=False),
    allowed_hosts: Optional[str] = typer.Option(None, help=_setting_help("allowed_hosts"), show_default=False),
    max_live: Optional[int] = typer.Option(None, help=_setting_help("max_live"), show_default=False),
    live_idle_timeout_s: Optional[float] = typer.Option(None, help=_setting_help("live_idle_timeout_s"),
                                                        show_default=False),
    cors_origins: Optional[str] = typer.Option(None, help=_setting_help("cors_origins"), show_default=False),
) -> None:
    """Serve the REST API and the web page. Set ACTIONREC_API_KEY to require a key on prediction routes."""
    from actionrec.serve.app import serve as run_server
    from actionrec.serve.settings import load_settings

    try:
        settings = load_settings(model_path=model, host=host, port=port, max_upload_mb=max_upload_mb,
                                 max_duration_s=max_duration_s, decode_timeout_s=decode_timeout_s, workers=workers,
                                 threads=threads, max_pending=max_pending, uncertain_below=uncertain_below,
                                 max_uploads=max_uploads, upload_idle_timeout_s=upload_idle_timeout_s,
                                 upload_min_kbps=upload_min_kbps, header_timeout_s=header_timeout_s,
                                 drain_timeout_s=drain_timeout_s, allowed_hosts=allowed_hosts, max_live=max_live,
                                 live_idle_timeout_s=live_idle_timeout_s, cors_origins=cors_origins)
        run_server(settings)
    except (ActionrecError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def demo(
    folder: Path = typer.Option(Path("demo"), help="Where the dataset, the run and the model go."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    rebuild: bool = typer.Option(False, help="Train again even if the folder has a model."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Build the model and stop."),
) -> None:
    """Offline demo: generate data, train, export, then serve the page and API on http://HOST:PORT."""
    from actionrec.demo import DemoPaths, build_demo_model

    if rebuild or not DemoPaths(folder).model.exists():
        _needs_training_extra()
    from actionrec.serve.app import serve as run_server
    from actionrec.serve.settings import ServerSettings

    try:
        model = build_demo_model(folder, console, rebuild=rebuild)
    except (ActionrecError, ValueError) as exc:
        _fail(str(exc))
    url = f"http://{host}:{port}"
    some_clip = next((folder / "synthetic-actions").glob("*/*.mp4"), None)
    console.rule("Serving")
    console.print(f"Web page: [bold]{url}/[/bold]   API docs: {url}/docs")
    if some_clip:
        console.print(f"Try: curl --data-binary @{some_clip} -H 'Content-Type: video/mp4' {url}/")
    if no_serve:
        return
    run_server(ServerSettings(model_path=model, host=host, port=port))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
