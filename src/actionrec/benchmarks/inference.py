"""Where prediction time and memory go, measured side by side in one run on this machine.

For each video, against the same file and model:
- sequential decode: every frame decoded from the start (what reading a whole video costs);
- the answer as this package gives it (seeking to the sampled frames), the answer the way it
  was given before (decoding from the start up to the last sampled frame), and its floor
  (reading the sampled frames alone, plus the model alone on them);
- the whole-video timeline, and its floor (one sequential decode plus the encoder alone on the
  sampled frames);
- the answer with its explanation (`predict --explain`) against the plain answer, runs of the two
  interleaved, where the model file can explain.
Work that runs at once cannot end sooner than its CPU seconds over the cores: "what the cores
allow" is the larger of a wall-clock floor and that (the work done on one thread, its CPU time).
Real servers (their memory, HTTP answers, batching) are measured in `actionrec.benchmarks.servers`.

Ratios, not absolute times, are what carry from one machine to another; these machines are
shared and noisy, so each figure is the median of `repeats` runs.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import av
import numpy as np

from actionrec.runtime.cores import usable_cores
from actionrec.runtime.recognizer import Recognizer
from actionrec.video import probe, stream_prediction_frames
from actionrec.video.decode import DecodeOutcome, read_frames
from actionrec.video.probe import VideoProbe
from actionrec.video.spec import frames_at, sample_indices


def _side_by_side(first: Callable[[], object], second: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock seconds of `first` and of `second`, their runs interleaved (a busy moment of a
    shared machine falls on both alike)."""
    firsts: list[float] = []
    seconds: list[float] = []
    for _ in range(repeats):
        for work, times in ((first, firsts), (second, seconds)):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
    return statistics.median(firsts), statistics.median(seconds)


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    return _median_wall_and_cpu(work, repeats)[0]


def cpu_seconds() -> float:
    """CPU time of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _median_wall_and_cpu(work: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock seconds of `work`, and median CPU seconds it took across its threads."""
    walls, cpus = [], []
    for _ in range(repeats):
        cpu, started = cpu_seconds(), time.perf_counter()
        work()
        walls.append(time.perf_counter() - started)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _decode_everything(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def compare_models(models: list[Path], video: Path, repeats: int = 5, threads: int | None = None) -> list[dict]:
    """Each model (an fp32 file and its int8 copy, say) timed side by side, rounds interleaved so
    that the machine's noise falls on all alike: the network alone on one clip of `video`'s frames,
    and the whole answer. Ratios are against the first model."""
    recognizers = [Recognizer(path, threads=threads) for path in models]
    frames = {id(r): read_frames_for(r, video) for r in recognizers}
    model_times: dict[int, list[float]] = {id(r): [] for r in recognizers}
    answer_times: dict[int, list[float]] = {id(r): [] for r in recognizers}
    for recognizer in recognizers:  # warm up
        recognizer.classify(frames[id(recognizer)])
    for _ in range(repeats):
        for recognizer in recognizers:
            model_times[id(recognizer)].append(median_seconds(partial(recognizer.classify, frames[id(recognizer)]), 1))
            answer_times[id(recognizer)].append(median_seconds(partial(recognizer.predict, video), 1))
    results: list[dict[str, Any]] = []
    for recognizer in recognizers:
        model_s, answer_s = (statistics.median(t[id(recognizer)]) for t in (model_times, answer_times))
        results.append({"model": str(recognizer.model_path), "precision": recognizer.card.precision,
                        "model_ms": round(model_s * 1000, 1), "answer_ms": round(answer_s * 1000, 1)})
    for entry in results:
        entry["model_vs_first"] = round(entry["model_ms"] / results[0]["model_ms"], 2)
    return results


def read_frames_for(recognizer: Recognizer, video: Path) -> np.ndarray:
    from actionrec.video import read_clip

    return read_clip(video, recognizer.spec, limits=recognizer.limits).frames[None]


def benchmark_video(recognizer: Recognizer, path: Path, repeats: int = 3) -> dict:
    """Seconds (medians) and ratios for one video; see the module docstring."""
    video = probe(path, recognizer.limits)
    spec = recognizer.spec
    clip = sample_indices(video.times, spec.num_frames)

    def read(indices: np.ndarray, seek: bool) -> np.ndarray:
        outcome = DecodeOutcome()
        frames = dict(read_frames(path, video, indices, spec.image_size, recognizer.limits, outcome, seek=seek))
        return np.stack([frames[int(i)] for i in indices])

    clip_frames = read(clip, True)
    recognizer.classify(clip_frames[None])  # the first run of a session allocates
    result: dict = {"video": str(path), "info": video.info.to_dict(), "keyframes": int(len(video.keyframe_pts)),
                    "frames_per_clip": spec.num_frames, "image_size": spec.image_size}
    seconds = result["seconds"] = {}
    cpu = result["cpu_seconds"] = {}
    seconds["sequential_decode"] = median_seconds(lambda: _decode_everything(path), repeats)
    seconds["answer"] = median_seconds(lambda: recognizer.predict(path), repeats)
    # Each cell of a 2 x 2 grid answered, with the whole video's answer, from one decode.
    recognizer.predict(path, regions="grid:2x2")
    seconds["answer_grid_2x2"] = median_seconds(lambda: recognizer.predict(path, regions="grid:2x2"), repeats)
    seconds["answer_decoding_from_start"] = median_seconds(
        lambda: recognizer.classify(read(clip, False)[None]), repeats)
    seconds["clip_network"], cpu["clip_network"] = _median_wall_and_cpu(
        lambda: recognizer.classify(clip_frames[None]), repeats)
    # The network as it runs beside other work: on its share of the cores, with less CPU lost to threading.
    recognizer.encode(clip_frames, alongside_decoding=True)  # that session's first run makes it
    cpu["clip_network_sharing_cores"] = _median_wall_and_cpu(
        lambda: recognizer.head(recognizer.encode(clip_frames, alongside_decoding=True)[None]), repeats)[1]
    seconds["clip_read"], cpu["clip_read"] = _median_wall_and_cpu(lambda: read(clip, True), repeats)
    seconds["answer_floor"] = seconds["clip_read"] + seconds["clip_network"]
    result["cores"] = usable_cores()
    recognizer.predict(path, explain=True)  # the first run makes the frame maps' session
    seconds["answer_beside_explained"], seconds["explained_answer"] = _side_by_side(
        lambda: recognizer.predict(path), lambda: recognizer.predict(path, explain=True), max(5, repeats))

    if len(recognizer.timeline.sample_times(video.info.duration_s)):
        _time_timeline(recognizer, path, video, read, result, repeats)
    result["ratios"] = {
        "answer / sequential decode": seconds["answer"] / seconds["sequential_decode"],
        "answer / answer floor": seconds["answer"] / seconds["answer_floor"],
        "answer decoding from start / answer": seconds["answer_decoding_from_start"] / seconds["answer"],
        "2 x 2 grid answer / answer": seconds["answer_grid_2x2"] / seconds["answer"],
        "explained answer / answer": seconds["explained_answer"] / seconds["answer_beside_explained"],
    }
    if "timeline" in seconds:
        result["ratios"]["timeline / timeline floor"] = seconds["timeline"] / seconds["timeline_floor"]
        result["ratios"]["timeline / the larger of decode and encoder"] = (
            seconds["timeline"] / max(seconds["sequential_decode"], seconds["timeline_encode"]))
        result["ratios"]["timeline / what the cores allow"] = seconds["timeline"] / seconds["timeline_cores_allow"]
    return result


def _encode_in_sixteens(recognizer: Recognizer, frames: np.ndarray) -> list[np.ndarray]:
    """The encoder over `frames`, 16 at a time."""
    return [recognizer.encode(frames[i : i + 16]) for i in range(0, len(frames), 16)]


def _time_timeline(recognizer: Recognizer, path: Path, video: VideoProbe,
                   read: Callable[[np.ndarray, bool], np.ndarray], result: dict, repeats: int) -> None:
    """The whole-video timeline's seconds, its floor and what the cores allow, into `result`."""
    seconds, cpu, spec = result["seconds"], result["cpu_seconds"], recognizer.spec
    sample_times = recognizer.timeline.sample_times(video.info.duration_s)
    seconds["timeline"] = median_seconds(lambda: recognizer.predict(path, segments=True), repeats)
    samples = np.unique(frames_at(video.times, sample_times))
    encode_s = 0.0
    for start in range(0, len(samples), 64):  # the frames in batches, then the encoder alone on them
        frames = read(samples[start : start + 64], True)
        encode_s += median_seconds(partial(_encode_in_sixteens, recognizer, frames), repeats)
    seconds["timeline_encode"] = encode_s
    seconds["timeline_floor"] = seconds["sequential_decode"] + encode_s
    # All of a timeline's work (decoding, converting the samples, encoder, head) done one step
    # after the other, the model on one thread: its CPU time over the cores is the soonest it can end.
    single = Recognizer(recognizer.model_path, threads=1, limits=recognizer.limits)
    cpu["timeline_one_thread"] = _median_wall_and_cpu(lambda: single.predict_stream(
        stream_prediction_frames(path, spec, recognizer.limits, recognizer.timeline)), repeats)[1]
    seconds["timeline_cores_allow"] = max(seconds["sequential_decode"], encode_s,
                                          cpu["timeline_one_thread"] / result["cores"])
    result["timeline_samples"] = int(len(sample_times))


def benchmark_folder(recognizer: Recognizer, videos: list[Path], workers: int | None = None) -> dict:
    """`predict_many` over `videos` as `actionrec predict FOLDER` runs them: clips a second."""
    started = time.perf_counter()
    answered = sum(result.prediction is not None for result in recognizer.predict_many(videos, workers=workers))
    seconds = time.perf_counter() - started
    return {"videos": len(videos), "answered": answered, "seconds": round(seconds, 2),
            "clips_per_s": round(len(videos) / seconds, 2), "workers": workers or os.cpu_count()}


class SpeedRow(TypedDict):
    """One line of the speed table: a figure, its ratio to what it is compared `of`, and the floor
    or ceiling the ratio is asked to keep (an operator and a number), if any."""

    what: str
    figure: str
    ratio: float | None
    of: str
    target: tuple[str, float] | None


def speed_table(results: dict) -> list[SpeedRow]:
    """The figures a user feels, each as a ratio to its floor measured in the same run: `results`
    as `actionrec benchmark` gathers them (videos: a short clip first, a long video last)."""
    short, long = results["videos"][0], results["videos"][-1]
    network_s = short["seconds"]["clip_network"]
    # Answers a second the cores allow when each answer's decoding and network share them.
    cpu = short["cpu_seconds"]
    cores_rate = short["cores"] / (cpu["clip_read"] + min(cpu["clip_network"], cpu["clip_network_sharing_cores"]))
    rows: list[SpeedRow] = [{"what": "the network alone on one clip", "figure": f"{network_s * 1000:.1f} ms",
                             "ratio": None, "of": "-", "target": None}]
    for entry in results.get("models", [])[1:]:
        rows.append({"what": f"the network alone, {entry['precision']}", "figure": f"{entry['model_ms']:.1f} ms",
                     "ratio": entry["model_vs_first"], "of": "the first model's", "target": None})
    answer_s = short["seconds"]["answer"]
    rows.append({"what": "one answer in process", "figure": f"{answer_s * 1000:.0f} ms",
                 "ratio": answer_s / short["seconds"]["answer_floor"], "of": "decode-only + network-only",
                 "target": None})
    rows.append({"what": "its 2 x 2 grid's answers (4 cells and the whole)",
                 "figure": f"{short['seconds']['answer_grid_2x2'] * 1000:.0f} ms",
                 "ratio": short["seconds"]["answer_grid_2x2"] / answer_s, "of": "one answer", "target": ("<=", 4.5)})
    explained = short["seconds"].get("explained_answer")
    if explained is not None:
        rows.append({"what": "one answer explained (--explain)", "figure": f"{explained * 1000:.0f} ms",
                     "ratio": explained / short["seconds"]["answer_beside_explained"],
                     "of": "the plain answer beside it", "target": ("<=", 1.5)})
    http = results.get("http") or {}
    for count, figures in http.items():
        rows.extend(_http_rows(count, figures, network_s, cores_rate, short["cores"], count == next(iter(http))))
    folder = results.get("folder")
    if folder:
        rows.append({"what": f"predict over a folder of {folder['videos']} videos",
                     "figure": f"{folder['clips_per_s']:.1f} clips/s", "ratio": folder["clips_per_s"] * network_s,
                     "of": "the network's rate", "target": (">=", 0.9)})
        rows.append({"what": f"predict over a folder of {folder['videos']} videos, against the cores",
                     "figure": f"{cores_rate:.1f}/s allowed", "ratio": folder["clips_per_s"] / cores_rate,
                     "of": "what the cores allow", "target": (">=", 0.9)})
    if long is not short and "timeline" in long["seconds"]:
        seconds = long["seconds"]
        larger = max(seconds["sequential_decode"], seconds["timeline_encode"])
        rows.append({"what": f"timeline of {Path(long['video']).name}", "figure": f"{seconds['timeline']:.1f} s",
                     "ratio": seconds["timeline"] / larger, "of": "the larger of decode and encoder",
                     "target": ("<=", 1.2)})
        rows.append({"what": f"timeline of {Path(long['video']).name}, against the cores",
                     "figure": f"{seconds['timeline_cores_allow']:.1f} s allowed",
                     "ratio": seconds["timeline"] / seconds["timeline_cores_allow"], "of": "what the cores allow",
                     "target": ("<=", 1.2)})
        rows.append({"what": f"one answer on {Path(long['video']).name}", "figure": f"{seconds['answer']:.2f} s",
                     "ratio": seconds["answer"] / seconds["answer_floor"], "of": "its floor", "target": ("<=", 1.2)})
    return rows


def _http_rows(workers: int, figures: dict[int, dict], network_s: float, cores_rate: float, cores: int,
               first: bool) -> list[SpeedRow]:
    """The speed table's rows for a server with `workers` decode workers (`first`: the first asked
    for, its rows named as ever; the others' name their --workers)."""
    one, clients = figures[1], max(figures)
    many = figures[clients]
    named = "" if first else f", --workers {workers}"
    # What the cores allow the server once the load generator, on the same cores, has taken its share.
    left_rate = cores / (cores / cores_rate + many["load_generator_cpu_ms"] / 1000)
    return [
        {"what": f"the same answer over HTTP, one client{named}",
         "figure": f"p50 {one['p50_ms']:.0f} ms beside {one['in_process_ms']:.0f} ms",
         "ratio": one["p50_ms"] / one["in_process_ms"], "of": "in process, run beside it", "target": ("<=", 1.1)},
        {"what": f"HTTP, {clients} clients{named}", "figure": f"{many['answers_per_s']:.1f} answers/s",
         "ratio": many["answers_per_s"] * network_s, "of": "the network's rate", "target": (">=", 0.9)},
        {"what": f"HTTP, {clients} clients{named}, against the cores", "figure": f"{cores_rate:.1f}/s allowed",
         "ratio": many["answers_per_s"] / cores_rate, "of": "what the cores allow", "target": (">=", 0.9)},
        {"what": f"HTTP, {clients} clients{named}, against the cores the load generator leaves",
         "figure": f"{left_rate:.1f}/s allowed ({many['load_generator_cpu_ms']:.0f} ms CPU to send each)",
         "ratio": many["answers_per_s"] / left_rate, "of": "what the cores allow the server", "target": None},
    ]


# --------------------------------------------------------------------------- inputs
