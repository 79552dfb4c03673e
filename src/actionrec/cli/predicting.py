"""Commands that use a model: predicting videos (one, many, whole folders) and watching live sources.
Neither imports torch or the server's packages."""

from __future__ import annotations

import glob
import json
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from actionrec.cli.common import EXIT_NOTHING_RAN, EXIT_USAGE, console, err_console, fail
from actionrec.errors import ActionrecError
from actionrec.runtime.results import BatchResult, ResultsFile, result_key, still_to_do
from actionrec.video.probe import VIDEO_EXTENSIONS, is_video_name
from actionrec.video.regions import RegionSpec, parse_regions

if TYPE_CHECKING:
    from actionrec.runtime.recognizer import Recognizer


def expand(sources: list[str]) -> list[Path]:
    """The videos that `sources` name: files as given, folders searched recursively for video
    files, glob patterns (`'clips/**/*.mp4'`) expanded. Each path once, in order."""
    found: list[Path] = []
    missing = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if is_video_name(p.name) and p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(source):
            found += sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        else:
            missing.append(source)
    if missing:
        fail(f"no such file or folder: {', '.join(missing)}", EXIT_USAGE)
    return list(dict.fromkeys(found))


class _Output:
    """Where results go: stdout (JSON lines, or text unless a progress bar shows) and, with --output,
    a results file that a rerun resumes (`actionrec.runtime.results`)."""

    def __init__(self, output: Path | None, as_json: bool, kept_rows: list[dict] | None) -> None:
        self.as_json = as_json
        self.file = ResultsFile(output, kept_rows) if output is not None else None

    def write(self, result: BatchResult, progress: Progress | None) -> None:
        if self.file is not None:
            self.file.write(result)
        if self.as_json:
            line = {"file": str(result.path), **(result.prediction.to_dict() if result.prediction else
                                                  {"error": result.error, "reason": result.reason})}
            print(json.dumps(line), flush=True)
        elif self.file is None or progress is None:
            _print_result(result)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _remote_videos(uris: list[str]) -> list[str]:
    """The videos behind object-store URIs, listed once so that a rerun can skip the answered ones."""
    from actionrec.runtime.on_ray import list_videos

    videos = []
    for uri in uris:
        try:
            videos += list_videos(uri)
        except (ImportError, OSError, ValueError) as exc:
            fail(f"{uri}: cannot list it: {exc}", EXIT_USAGE)
    return videos


def _ray_answers(recognizer, videos: list[Path | str], address: str | None, top_k: int,
                 actors: int | None, gpus: float, threads: int | None):
    from actionrec.runtime.on_ray import check_ray_installed, ray_predict

    try:
        check_ray_installed()
    except ImportError as exc:
        fail(f"--ray: {exc}", EXIT_NOTHING_RAN)

    return ray_predict(recognizer.model_path, [result_key(video) for video in videos], address=address, top_k=top_k,
                       actors=actors, gpus_per_actor=gpus, threads=threads, card=recognizer.card)


Precision = Literal["auto", "fp32", "int8"]


def _load_chosen(model: Path, precision: str, threads: int | None) -> Recognizer:
    """The model file `--precision` picks, loaded; which one and why goes to stderr when there was a choice."""
    from actionrec.runtime.precision import choose_model_file, int8_copy_of, load_chosen
    from actionrec.runtime.recognizer import Recognizer

    recognizer, choice = load_chosen(choose_model_file(model, precision),
                                     lambda chosen: Recognizer(chosen.path, threads=threads, card=chosen.card))
    if precision != "auto" or choice.path != Path(model) or int8_copy_of(Path(model)).is_file():
        err_console.print(f"[dim]{escape(choice.describe())}[/dim]")
    return recognizer


def _print_result(result) -> None:
    if result.prediction is None:
        error = result.error or ""
        if error.startswith(f"{result.path}: "):  # the message names the file already
            error = error[len(f"{result.path}: "):]
        err_console.print(f"[red]{escape(str(result.path))}[/red]: {escape(error)}")
        return
    prediction = result.prediction
    flag = "  [yellow](uncertain)[/yellow]" if prediction.uncertain else ""
    console.print(f"[bold]{escape(str(result.path))}[/bold]: {escape(prediction.action)} "
                  f"({prediction.confidence:.1%}){flag}")
    for entry in prediction.top_k[1:]:
        console.print(f"    {entry.action:<28} {entry.confidence:.1%}")
    for segment in prediction.segments or []:
        console.print(f"    {segment.start_s:7.2f}-{segment.end_s:7.2f} s  {segment.action} ({segment.confidence:.0%})")
    for region in prediction.regions or []:
        flag = "  [yellow](uncertain)[/yellow]" if region.uncertain else ""
        box = ",".join(str(v) for v in region.box)
        console.print(f"    {region.id:<9} {box:<19} {escape(region.action)} ({region.confidence:.1%}){flag}")
        for segment in region.segments or []:
            console.print(f"        {segment.start_s:7.2f}-{segment.end_s:7.2f} s  {escape(segment.action)} "
                          f"({segment.confidence:.0%})")
    for warning in prediction.warnings:
        console.print(f"    [yellow]warning:[/yellow] {escape(warning)}")
    if prediction.explanation is not None:
        _print_explanation(prediction.explanation)


def _print_explanation(explanation) -> None:
    """The explanation's short line, then its moments as bars (removing one lowers the answer where
    its weight is positive), and what its warning codes mean."""
    from actionrec.runtime.explain import WARNINGS

    console.print(f"    why: {escape(explanation.summary or 'no moments to weigh')}")
    largest = max((abs(moment.weight) for moment in explanation.moments), default=0.0) or 1.0
    for moment in explanation.moments:
        bar = "#" * round(10 * abs(moment.weight) / largest)
        effect = "lowers" if moment.weight > 0 else "raises" if moment.weight < 0 else "does not change"
        console.print(f"    {moment.time_s:7.2f} s  {moment.weight:+9.4f} {bar:<10} (without it: "
                      f"{moment.probability_without:.1%}, removing it {effect} the answer)")
    for code in explanation.warnings:
        console.print(f"    [yellow]explanation: {code}[/yellow]: {escape(WARNINGS.get(code, ''))}")


def predict(
    model: Path = typer.Argument(..., help="An exported model.onnx."),
    sources: list[str] = typer.Argument(..., help="Videos: files, folders (searched recursively) or glob patterns "
                                                  "such as 'clips/**/*.mp4'."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many actions to list."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per video, one per line."),
    segments: bool = typer.Option(False, help="Also say where in the video each action happens."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Also write one row per video to this "
                                          "file (.jsonl, .csv or .parquet); a rerun skips the videos it answered or "
                                          "failed on for good, and tries timeouts and lost workers again."),
    workers: int | None = typer.Option(None, min=0, help="Videos read at once, each in its own process "
                                          "(default: one per core; 0: all in this process)."),
    threads: int | None = typer.Option(None, help="ONNX Runtime threads (default: the cores, shared among "
                                                     "workers)."),
    timeout_s: float = typer.Option(300.0, help="A video that takes longer is stopped and reported."),
    ray: bool = typer.Option(False, "--ray", help="Run as a Ray Data pipeline: decoding as CPU tasks, the model in "
                                                   "a pool of actors (needs the ray extra). SOURCES may also be "
                                                   "object-store URIs Ray reads (s3://, gs://)."),
    ray_address: str | None = typer.Option(None, help="The Ray cluster to join (default $RAY_ADDRESS, else a "
                                                         "local Ray)."),
    ray_actors: int | None = typer.Option(None, help="Model actors (default: one per GPU with --ray-gpus, else "
                                                        "one per two CPUs)."),
    ray_gpus: float = typer.Option(0, help="GPUs per model actor (e.g. 1; 0: CPU actors)."),
    precision: Precision = typer.Option("auto", help="auto: the int8 copy export kept beside MODEL "
                                        "(MODEL.int8.onnx) where this CPU has VNNI or AMX, else MODEL; fp32: MODEL; "
                                        "int8: the copy."),
    regions: str | None = typer.Option(None, "--regions", help="Also answer for each region of the video: "
                                       "grid:CxR (e.g. grid:2x2), boxes x,y,w,h;... in pixels or fractions of the "
                                       "frame, people (the people extra), or detector:PATH.onnx (a YOLO-layout "
                                       "person detector). See docs/regions.md."),
    explain: bool = typer.Option(False, "--explain", help="Also say why: the weight of each sampled moment and "
                                 "where in the picture the evidence lies (--json: `explanation`)."),
    explain_out: Path | None = typer.Option(None, "--explain-out", help="With --explain, also draw each video's "
                                            "explanation into this folder (PNG): its moments as a strip, and "
                                            "its strongest frame with the map laid over it."),
) -> None:
    """Say which action each video shows. Exit code 0: all answered; 1: some could not be read; 2: a
    wrong command line; 3: nothing could run (the model)."""
    videos = _videos(sources, ray, segments, explain, explain_out)
    spec = _region_spec(regions, ray, segments, explain)
    try:
        recognizer = _load_chosen(model, precision, threads)
    except ActionrecError as exc:
        fail(str(exc), EXIT_NOTHING_RAN)
    _load_detector(recognizer, spec)
    out, videos, skipped = _open_output(output, videos, as_json)
    def answers() -> Iterable[BatchResult]:
        if ray:
            return _ray_answers(recognizer, videos, ray_address, top_k, ray_actors, ray_gpus, threads)
        return recognizer.predict_many(videos, workers=workers, top_k=top_k, segments=segments, timeout_s=timeout_s,
                                       regions=spec, explain=explain)

    failures = _write_answers(answers, len(videos), out, output, explain_out)
    _summarize(failures, len(videos), skipped, output)


def _open_output(output: Path | None, videos: list[Path | str], as_json: bool) -> tuple[_Output, list[Path | str], int]:
    """Where answers go, the videos still to answer (a results file's rerun skips those it has) and
    how many were skipped; a usage error where the results file cannot be used."""
    skipped, kept_rows = 0, None
    try:
        if output is not None:
            todo, kept_rows = still_to_do(output, videos)
            skipped, videos = len(videos) - len(todo), todo
        return _Output(output, as_json, kept_rows), videos, skipped
    except ActionrecError as exc:
        fail(str(exc), EXIT_USAGE)


def _summarize(failures: Counter, tried: int, skipped: int, output: Path | None) -> None:
    """How many were answered, failed (by reason) and skipped, on stderr where there were several;
    exit code 1 where any failed."""
    answered_now = tried - sum(failures.values())
    summary = f"{answered_now} answered, {sum(failures.values())} failed"
    if failures:
        summary += " (" + ", ".join(f"{reason}: {count}" for reason, count in failures.most_common()) + ")"
    if skipped:
        summary += f", {skipped} skipped (answered, or failed for good, in {output})"
    if tried + skipped > 1 or output is not None:
        err_console.print(escape(summary + (f"; results in {output}" if output else "")))
    if failures:
        raise typer.Exit(1)


def _region_spec(regions: str | None, ray: bool, segments: bool, explain: bool) -> RegionSpec | None:
    """--regions parsed, or a usage error saying what is wrong with it."""
    if regions is None:
        return None
    if explain:
        fail("--explain explains the whole video's answer, not regions: use one or the other.", EXIT_USAGE)
    if ray:
        fail("--regions is not available with --ray yet: predict regions locally.", EXIT_USAGE)
    try:
        spec = parse_regions(regions)
    except ActionrecError as exc:
        fail(str(exc), EXIT_USAGE)
    if segments and not spec.fixed:
        fail("--segments with --regions makes a timeline per cell or zone; people are answered without one.",
             EXIT_USAGE)
    return spec


def _load_detector(recognizer: Recognizer, spec: RegionSpec | None) -> None:
    """The detector --regions needs, loaded (and checked) before any video is read; a usage error if it cannot."""
    if spec is not None:
        try:
            recognizer.detector(spec)
        except ActionrecError as exc:
            fail(str(exc), EXIT_USAGE)


def _videos(sources: list[str], ray: bool, segments: bool, explain: bool = False,
            explain_out: Path | None = None) -> list[Path | str]:
    """The videos SOURCES name (local ones expanded, object-store URIs listed), or a usage error."""
    if explain_out is not None and not explain:
        fail("--explain-out draws explanations: add --explain.", EXIT_USAGE)
    if explain and ray:
        fail("--explain is not available with --ray yet: explain answers locally.", EXIT_USAGE)
    remote = [source for source in sources if "://" in source]
    if remote and not ray:
        fail(f"{remote[0]}: URIs are read by Ray; add --ray.", EXIT_USAGE)
    if ray and segments:
        fail("--segments is not available with --ray yet: predict timelines locally.", EXIT_USAGE)
    local = expand([source for source in sources if "://" not in source]) if len(remote) < len(sources) else []
    videos: list[Path | str] = [*local, *(_remote_videos(remote) if remote else [])]
    if not videos:
        fail(f"no videos found in {', '.join(sources)} (looked for {', '.join(VIDEO_EXTENSIONS)}).", EXIT_USAGE)
    return videos


def _write_answers(answers: Callable[[], Iterable[BatchResult]], count: int, out: _Output,
                   output: Path | None, explain_out: Path | None = None) -> Counter:
    """Each answer to stdout and the results file as it comes, under a progress bar on a terminal;
    returns the failures by reason. Ctrl-C keeps what was written."""
    failures: Counter = Counter()
    show_progress = err_console.is_terminal and count > 1
    progress = Progress(TextColumn("Predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err_console, transient=True) if show_progress else None
    try:
        if progress is not None:
            progress.start()
            task = progress.add_task("videos", total=count)
        for result in answers():
            out.write(result, progress)
            if explain_out is not None and result.prediction is not None:
                _draw(result, explain_out)
            if result.prediction is None:
                failures[result.reason] += 1
            if progress is not None:
                progress.advance(task)
    except KeyboardInterrupt:
        fail("interrupted" + (f"; the answers so far are in {output}: run the same command again to go on."
                              if output else "."), 130)
    finally:
        if progress is not None:
            progress.stop()
        out.close()
    return failures


def _draw(result: BatchResult, folder: Path) -> None:
    """The result's explanation drawn into `folder` (`actionrec.runtime.explain_pictures`); where it
    cannot be, why, on stderr: the answer stands."""
    from actionrec.runtime.explain_pictures import draw_explanation

    assert result.prediction is not None
    try:
        for path in draw_explanation(result.path, result.prediction, folder):
            err_console.print(f"[dim]{escape(str(path))}[/dim]")
    except Exception as exc:  # the video read again, a full disk: the answer stands, said either way
        err_console.print(f"[yellow]{escape(str(result.path))}: cannot draw its explanation "
                          f"({escape(type(exc).__name__)}: {escape(str(exc))})[/yellow]")


def watch(
    model: Path = typer.Argument(..., help="An exported model.onnx."),
    source: str = typer.Argument(..., help="A camera (0, /dev/video0), a stream URL (rtsp://, http://...) or a file."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per answer and per event."),
    realtime: bool = typer.Option(True, "--realtime/--as-fast-as-possible",
                                  help="Play a file at its own speed (default), or read it as fast as possible."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many actions each JSON answer lists."),
    update_interval: float = typer.Option(0.5, help="Longest time between two answers, in seconds."),
    threads: int | None = typer.Option(None, help="ONNX Runtime threads (default: all cores)."),
    precision: Precision = typer.Option("auto", help="auto: MODEL's int8 copy where this CPU has VNNI or AMX; "
                                        "fp32: MODEL; int8: the copy."),
) -> None:
    """Recognize actions live: a rolling answer as the source plays. Ctrl-C stops."""
    from actionrec.runtime.watching import LiveAnswer
    from actionrec.runtime.watching import watch as watch_source

    answers = 0
    last_action: str | None = None

    def on_answer(answer: LiveAnswer) -> None:
        nonlocal answers, last_action
        if as_json:
            print(json.dumps(answer.to_dict()), flush=True)
        elif answer.action != last_action:
            flag = "  [yellow](uncertain)[/yellow]" if answer.uncertain else ""
            console.print(f"{answer.time_s:8.1f} s  [bold]{answer.action}[/bold] ({answer.confidence:.0%}){flag}")
        answers += 1
        last_action = answer.action

    def on_event(kind: str, text: str) -> None:
        if as_json:
            print(json.dumps({"event": kind, "detail": text}), flush=True)
        else:
            err_console.print(f"[dim]{text}[/dim]")

    try:
        recognizer = _load_chosen(model, precision, threads)
        watch_source(recognizer, source, on_answer, on_event, realtime=realtime, update_interval_s=update_interval,
                     top_k=top_k)
    except (ActionrecError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        on_event("stopped", f"stopped after {answers} answers")
