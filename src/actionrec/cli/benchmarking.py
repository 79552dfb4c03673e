"""Commands that measure: where prediction time and memory go, and the inputs to measure on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from actionrec.cli.common import console, fail, needs_training_extra
from actionrec.errors import ActionrecError


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
        fail(str(exc))
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


def benchmark_inputs(
    folder: Path = typer.Argument(Path("benchmark-inputs"), help="Where to write them (kept for the next run)."),
    minutes: float = typer.Option(10.0, help="Length of the long video."),
    height: int = typer.Option(720, help="Height of the long video (16:9)."),
) -> None:
    """Make the benchmark's inputs: a UCF101-shaped untrained model (16 x 224), a long H.264 video, a short clip."""
    needs_training_extra()
    from actionrec.benchmark import prepare_inputs

    paths = prepare_inputs(folder, minutes=minutes, height=height)
    console.print("\n".join(f"{name}: {path}" for name, path in paths.items()))
    console.print(f"Then: actionrec benchmark {paths['model']} {paths['short']} {paths['long']} --server")
