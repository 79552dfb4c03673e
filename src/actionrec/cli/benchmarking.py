"""Commands that measure: where prediction time and memory go, and the inputs to measure on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from actionrec.cli.common import console, fail, needs_serving_extra, needs_training_extra
from actionrec.datasets import DatasetKind
from actionrec.errors import ActionrecError
from actionrec.training.config import TrainingPrecision


def benchmark(
    model: Path = typer.Argument(..., help="An exported model.onnx."),
    videos: list[Path] = typer.Argument(..., help="Videos to measure on (`actionrec benchmark-inputs` makes some)."),
    repeats: int = typer.Option(3, help="Runs per measurement; medians are reported."),
    threads: int | None = typer.Option(None, help="ONNX Runtime threads (default: all cores)."),
    server: bool = typer.Option(False, "--server", help="Also measure a real server's memory answering timelines."),
    compare: list[Path] = typer.Option([], "--compare", help="Other model files (e.g. MODEL.int8.onnx) timed side by "
                                                              "side with MODEL on the first video."),
    http: bool = typer.Option(False, "--http", help="Also time a real server answering the first video: one "
                                                     "client (each request beside an in-process answer), and 8 at "
                                                     "once."),
    http_workers: list[int] = typer.Option([2], "--http-workers", min=1, metavar="N",
                                           help="Decode workers of the server --http times; repeat the option to "
                                                "time servers with each count side by side."),
    folder: Path | None = typer.Option(None, help="Also time `predict` over the videos of this folder."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Time answers and timelines against sequential decoding and their floors, on this machine; the
    speed table puts each figure beside its floor, measured in the same run (first video: a short
    clip; last: a long video)."""
    from actionrec.benchmarks.inference import speed_table
    from actionrec.runtime.recognizer import Recognizer

    try:
        recognizer = Recognizer(model, threads=threads)
        results = _measure(recognizer, model, videos, repeats, threads, server, compare,
                           tuple(http_workers) if http else (), folder)
    except (ActionrecError, ValueError, OSError) as exc:
        fail(str(exc))
    results["speed_table"] = speed_table(results)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    console.print(f"{results['machine']}; {model} ({recognizer.spec.num_frames} x {recognizer.spec.image_size}px)")
    _print_measured(results, videos[0], repeats)
    _print_speed_table(results["speed_table"])


def _print_measured(results: dict, first_video: Path, repeats: int) -> None:
    """Each video's figures, the models side by side and the server's memory, where measured."""
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
    if "models" in results:
        console.print(f"\n[bold]models side by side[/bold] on {first_video} "
                      f"(medians of {max(5, repeats)} interleaved runs)")
        table = Table("model", "precision", "network, one clip (ms)", "vs the first", "whole answer (ms)", box=None)
        for entry in results["models"]:
            table.add_row(entry["model"], entry["precision"], f"{entry['model_ms']:.1f}",
                          f"{entry['model_vs_first']:.2f}x", f"{entry['answer_ms']:.1f}")
        console.print(table)
    if "server" in results:
        memory = results["server"]
        console.print(f"\nserver with {memory['workers']} decode workers: idle {memory['idle_mb']['server']:.0f} MB "
                      f"(with workers {memory['idle_mb']['with_workers']:.0f} MB)")
        for request in memory["requests"]:
            console.print(f"  timeline of {request['video']}: {request['status']} in {request['seconds']} s, peak "
                          f"{request['peak_server_mb']:.0f} MB (with workers {request['peak_with_workers_mb']:.0f} MB)")
        console.print(f"  idle after: {memory['idle_after_mb']['server']:.0f} MB "
                      f"(with workers {memory['idle_after_mb']['with_workers']:.0f} MB)")


def _measure(recognizer, model: Path, videos: list[Path], repeats: int, threads: int | None, server: bool,
             compare: list[Path], http_workers: tuple[int, ...], folder: Path | None) -> dict:
    from actionrec.benchmarks.inference import benchmark_folder, benchmark_video, compare_models
    from actionrec.benchmarks.servers import benchmark_http, benchmark_server
    from actionrec.cli.predicting import expand
    from actionrec.runtime.resources import describe_cpu

    results: dict[str, Any] = {"machine": describe_cpu(), "model": str(model),
                               "threads": threads or "onnxruntime default",
                               "videos": [benchmark_video(recognizer, video, repeats) for video in videos]}
    if compare:
        results["models"] = compare_models([model, *compare], videos[0], max(5, repeats), threads)
    if server:
        results["server"] = benchmark_server(model, videos)
    if http_workers:
        results["http"] = benchmark_http(model, videos[0], recognizer, workers=http_workers)
    if folder is not None:
        results["folder"] = benchmark_folder(recognizer, expand([str(folder)]))
    return results


def _print_speed_table(rows: list[dict]) -> None:
    table = Table("speed", "measured", "ratio", "of", "floor asked", title="\nthe speed table", box=None)
    for row in rows:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        target = "" if row["target"] is None else f"{row['target'][0]} {row['target'][1]}x"
        table.add_row(row["what"], row["figure"], ratio, row["of"], target)
    console.print(table)


def benchmark_train(
    data_dir: Path = typer.Argument(..., help="Dataset root (folder per class, or UCF101 with --dataset ucf101)."),
    dataset: DatasetKind = typer.Option("folder", help="Dataset kind."),
    finetune: bool = typer.Option(True, "--finetune/--frozen", help="Train the backbone too (frames cached), or "
                                                                     "the head on cached frozen features."),
    backbone_weights: str = typer.Option("none", help="imagenet | none | PATH (the figures do not depend on it)."),
    width_mult: float = typer.Option(1.0, help="MobileNetV2 width multiplier."),
    frames: int = typer.Option(16, help="Frames per clip."),
    image_size: int = typer.Option(224, help="Frame size in pixels."),
    batch_size: int = typer.Option(32),
    micro_batch_size: int | None = typer.Option(None, help="Clips per forward/backward pass (default: the batch)."),
    train_views: int = typer.Option(2, help="Views cached per clip (the UCF101 recipe's 2)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    precision: TrainingPrecision = typer.Option("auto", help="auto: bf16/fp16 on a GPU, fp32 on a CPU."),
    workers: int | None = typer.Option(None, help="Decoding processes (default: one per core)."),
    decode_on_the_fly: bool = typer.Option(False, "--decode-on-the-fly", help="Time steps that decode a fresh view "
                                                                              "each time instead of cached frames."),
    clips: int = typer.Option(200, help="Training clips to cache (0: all)."),
    steps: int = typer.Option(20, help="Training steps to time (after 2 warm-up steps, plus the batches "
                                       "loader processes read ahead)."),
    cache_dir: Path | None = typer.Option(None, help="Cache folder (default: a temporary one, removed after)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Measure training here: clips/s building the cache, steps/s training, memory peaks (and GPU use)."""
    needs_training_extra()
    import shutil
    import tempfile

    from actionrec.benchmarks.training import benchmark_training
    from actionrec.runtime.resources import describe_cpu
    from actionrec.training.config import TrainConfig, resolved

    scratch = Path(tempfile.mkdtemp(prefix="actionrec-benchmark-train-"))
    try:
        if not finetune and backbone_weights == "none":  # frozen random weights: as fast as ImageNet's
            backbone_weights = _random_backbone(scratch / "random-backbone.pth", width_mult)
        config = TrainConfig(data_dir=str(data_dir), out=str(scratch / "run"), dataset=dataset, finetune=finetune,
                             backbone_weights=backbone_weights, frames=frames, image_size=image_size,
                             width_mult=width_mult, batch_size=batch_size, micro_batch_size=micro_batch_size,
                             train_views=train_views, device=device,
                             precision=precision, workers=workers, decode_on_the_fly=decode_on_the_fly,
                             cache_dir=str(cache_dir or scratch / "cache"))
        result = benchmark_training(config, steps=steps, clips=clips or None,
                                    console=Console(stderr=True) if as_json else console)
        result["machine"] = describe_cpu()
    except (ActionrecError, ValueError, OSError) as exc:
        fail(str(exc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    _print_training_benchmark(result, resolved(config.batch_size, "batch_size"))


def _print_training_benchmark(result: dict, batch_size: int) -> None:
    from actionrec.benchmarks.training import UCF101_SPLIT1_TRAINING_CLIPS

    runtime, cache, training = result["runtime"], result["cache"], result["training"]
    console.print(f"{result['machine']}; training on {runtime['device']}"
                  f"{' (' + runtime['gpu'] + ')' if 'gpu' in runtime else ''}, {runtime['precision']}")
    if cache is None:
        console.print("cache: none (training steps decode their clips)")
    else:
        console.print(f"cache: {cache['clips']} clips in {cache['seconds']} s = {cache['clips_per_s']} clips/s "
                      f"(peak resident {cache['peak_rss_mb']} MB with workers"
                      f"{_gpu_use(cache)}; {cache['already_cached']} already cached)")
    console.print(f"training: {training['steps']} steps of {batch_size} in {training['seconds']} s = "
                  f"{training['steps_per_s']} steps/s, {training['clips_per_s']} clips/s (peak resident "
                  f"{training['peak_rss_mb']} MB{_gpu_use(training)})")
    console.print(f"an epoch of UCF101 split 1 ({UCF101_SPLIT1_TRAINING_CLIPS:,} clips) at this speed: "
                  f"{result['projected_ucf101_split1_epoch_s'] / 60:.1f} min")


def _random_backbone(path: Path, width_mult: float) -> str:
    import torch
    from torchvision.models import mobilenet_v2

    torch.save(mobilenet_v2(weights=None, width_mult=width_mult).state_dict(), path)
    return str(path)


def _gpu_use(phase: dict) -> str:
    parts = []
    if phase.get("gpu_utilisation_pct") is not None:
        parts.append(f"GPU busy {phase['gpu_utilisation_pct']}%")
    if phase.get("gpu_peak_mb") is not None:
        parts.append(f"GPU memory peak {phase['gpu_peak_mb']} MB")
    return "".join(f", {part}" for part in parts)


def benchmark_serving(
    model: Path = typer.Argument(..., help="An exported model.onnx."),
    video: Path = typer.Argument(..., help="The video every request uploads."),
    concurrency: list[int] = typer.Option([1, 8, 32], help="Clients at once (repeat the option for several)."),
    requests_per_client: int = typer.Option(4, help="Requests each client sends at each level."),
    workers: int = typer.Option(4, help="The servers' decode workers (they bound how many requests can batch)."),
    window_ms: float = typer.Option(0.0, help="The batching server's collection window."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Dynamic batching measured: a real server's answers/s and latency at each concurrency, off and on."""
    needs_serving_extra()
    from actionrec.benchmarks.servers import benchmark_batching
    from actionrec.runtime.resources import describe_cpu

    result = benchmark_batching(model, video, tuple(concurrency), requests_per_client, workers, window_ms)
    result["machine"] = describe_cpu()
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console.print(f"{result['machine']}; {model} on {video}, {workers} decode workers")
    table = Table("batching", "clients", "answers/s", "p50 (ms)", "p95 (ms)", "statuses", box=None)
    for run in result["runs"]:
        table.add_row("on" if run["batching"] else "off", str(run["concurrency"]), f"{run['answers_per_s']:.1f}",
                      f"{run['p50_ms']:.0f}", f"{run['p95_ms']:.0f}",
                      ", ".join(f"{code}: {count}" for code, count in run["statuses"].items()))
    console.print(table)


def benchmark_inputs(
    folder: Path = typer.Argument(Path("benchmark-inputs"), help="Where to write them (kept for the next run)."),
    minutes: float = typer.Option(10.0, help="Length of the long video."),
    height: int = typer.Option(720, help="Height of the long video (16:9)."),
    training_groups: int = typer.Option(0, help="Also a UCF101-shaped training tree: 101 classes x this many "
                                                "groups of one 320x240 clip (20: 2,020 clips, 115 MB).")
) -> None:
    """Make the benchmark's inputs: a UCF101-shaped untrained model (16 x 224), a long H.264 video, a short clip."""
    needs_training_extra()
    from actionrec.benchmarks.inputs import prepare_inputs, prepare_training_tree

    paths = prepare_inputs(folder, minutes=minutes, height=height)
    console.print("\n".join(f"{name}: {path}" for name, path in paths.items()))
    console.print(f"Then: actionrec benchmark {paths['model']} {paths['short']} {paths['long']} --server")
    if training_groups:
        tree = prepare_training_tree(folder, groups=training_groups)
        console.print(f"training tree: {tree}\nThen: actionrec benchmark-train {tree} --dataset ucf101")


def benchmark_regions(
    model: Path = typer.Argument(..., help="An exported model.onnx, trained on other groups than --groups."),
    clips: Path = typer.Argument(..., help="Real clips laid out as UCF101 is: CLASS/v_CLASS_gNN_cNN.avi."),
    groups: str = typer.Option("20-25", help="The held-out groups the videos are built from (e.g. 20-25)."),
    out: Path = typer.Option(Path("regions-videos"), help="Where the built videos are written."),
    mosaics: int = typer.Option(18, min=0, help="2 x 2 mosaics of four clips of four actions."),
    pairs: int = typer.Option(24, min=0, help="640 x 240 pairs of two clips side by side."),
    people: bool = typer.Option(True, "--people/--no-people", help="Also answer the mosaics with `people`."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Regions on real footage: build mosaics and side-by-side videos from held-out clips, then say how
    often grid:2x2, grid:2x1 and people name each cell's action (see docs/regions.md)."""
    from actionrec.benchmarks.regions import build_videos, held_out_clips, measure
    from actionrec.runtime.recognizer import Recognizer

    try:
        first, _, last = groups.partition("-")
        wanted = set(range(int(first), int(last or first) + 1))
    except ValueError:
        fail(f"--groups {groups!r}: give a range such as 20-25.")
    try:
        recognizer = Recognizer(model)
        found = held_out_clips(clips, recognizer.labels, wanted)
        if len(found) < 4:
            fail(f"{clips}: clips of groups {groups} of at least 4 of the model's actions are needed; found "
                 f"{len(found)} ({', '.join(found) or 'none'}).")
        result = measure(recognizer, build_videos(found, out, mosaics, pairs), people)
    except (ActionrecError, OSError) as exc:
        fail(str(exc))
    result |= {"model": str(model), "clips": str(clips), "groups": groups, "actions": sorted(found)}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for kind, grid in (("mosaic", "grid:2x2 on 2 x 2 mosaics"), ("pair", "grid:2x1 on side-by-side pairs")):
        entry = result[kind]
        if entry["regions"]:
            console.print(f"{grid}: {entry['named_right']:.1%} of {entry['regions']} regions named right (their "
                          f"clips alone: {entry['named_right_alone']:.1%})")
    if "people" in result:
        seen = result["people"]
        named = "-" if seen["tracks_named_right"] is None else f"{seen['tracks_named_right']:.1%}"
        console.print(f"people on the mosaics: a track in {seen['cells_with_a_track']:.1%} of {seen['cells']} cells; "
                      f"{named} of {seen['tracks']} tracks named with their cell's action; the detector "
                      f"{seen['detector_frames_per_s']} frames/s")
