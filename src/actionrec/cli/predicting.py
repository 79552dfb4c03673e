"""Commands that use a model: predicting videos (one, many, whole folders) and watching live sources.
Neither imports torch or the server's packages."""

from __future__ import annotations

import csv
import glob
import io
import json
from collections import Counter
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from actionrec.cli.common import EXIT_NOTHING_RAN, EXIT_USAGE, console, err_console, fail
from actionrec.errors import ActionrecError
from actionrec.video.probe import VIDEO_EXTENSIONS, is_video_name

RESULT_COLUMNS = ("path", "action", "confidence", "top_k", "uncertain", "error", "reason")


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


def _key(path: Path | str) -> str:
    """How a results file names a video: a local file by its absolute path, a URI as it is."""
    return str(path) if "://" in str(path) else str(Path(path).resolve())


# Failures that may pass when tried again (the machine was busy, a worker was lost); a rerun with the
# same --output tries these again and keeps every other row.
RETRIED_REASONS = frozenset({"decode_timeout", "worker_lost", "internal_error"})


def _earlier_rows(output: Path) -> list[dict]:
    """The rows an earlier run wrote to `output` (JSON lines, CSV or Parquet)."""
    if not output.is_file():
        return []
    if output.suffix.lower() == ".parquet":
        return _parquet_rows(output)
    text = output.read_text(encoding="utf-8")
    if output.suffix.lower() == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def _row_key(row: dict) -> str:
    return _key(row.get("path") or row.get("file"))


def _settled(rows: list[dict]) -> set[str]:
    """The videos an earlier run answered, or failed on for a reason a retry would not change."""
    return {_row_key(row) for row in rows if row.get("action") or row.get("reason") not in RETRIED_REASONS}


def _parquet_rows(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        fail("Parquet output needs pyarrow (`pip install 'actionrec[ray]'` brings it); or write .jsonl.", EXIT_USAGE)
    return parquet.read_table(path).to_pylist() if path.is_file() else []


class _Results:
    """Where results go: stdout (JSON lines or text) and, with --output, a file that a rerun resumes.
    JSON lines and CSV are written as answers come; Parquet, a columnar file, at the end."""

    def __init__(self, output: Path | None, as_json: bool, kept_rows: list[dict] | None = None) -> None:
        """`kept_rows`: the earlier rows to keep in `output` (those of videos tried again are left out,
        so the file holds one row per video)."""
        self.output, self.as_json = output, as_json
        self.file = None
        self.parquet: list[dict] | None = None
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
        if output is not None and output.suffix.lower() == ".parquet":
            self.parquet = list(kept_rows or [])
        elif output is not None:
            if kept_rows is not None and len(kept_rows) < len(_earlier_rows(output)):
                self._rewrite(output, kept_rows)
            fresh = not output.exists() or output.stat().st_size == 0
            self.file = open(output, "a", encoding="utf-8", newline="")
            self.csv = csv.DictWriter(self.file, RESULT_COLUMNS) if output.suffix.lower() == ".csv" else None
            if self.csv is not None and fresh:
                self.csv.writeheader()

    @staticmethod
    def _rewrite(output: Path, rows: list[dict]) -> None:
        from actionrec.files import atomic_output

        with atomic_output(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
            if output.suffix.lower() == ".csv":
                writer = csv.DictWriter(out, RESULT_COLUMNS)
                writer.writeheader()
                writer.writerows({name: row.get(name) for name in RESULT_COLUMNS} for row in rows)
            else:
                out.writelines(json.dumps(row) + "\n" for row in rows)

    def write(self, result, progress: Progress | None) -> None:
        row = result.row()
        flat = row | {"top_k": json.dumps(row["top_k"]) if row["top_k"] else None}  # a column, not a list
        if self.parquet is not None:
            self.parquet.append(flat)
        if self.file is not None:
            if self.csv is not None:
                self.csv.writerow(flat)
            else:
                full = result.prediction.to_dict() if result.prediction else {}
                self.file.write(json.dumps(row | full) + "\n")
            self.file.flush()  # a killed run keeps every answer so far
        if self.as_json:
            line = {"file": str(result.path), **(result.prediction.to_dict() if result.prediction else
                                                  {"error": result.error, "reason": result.reason})}
            print(json.dumps(line), flush=True)
        elif self.output is None or progress is None:
            _print_result(result)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.parquet is not None and self.output is not None:
            import pyarrow as arrow
            import pyarrow.parquet as parquet

            from actionrec.files import atomic_output

            columns = {name: [row.get(name) for row in self.parquet] for name in RESULT_COLUMNS}
            schema = arrow.schema([("path", arrow.string()), ("action", arrow.string()),
                                   ("confidence", arrow.float64()), ("top_k", arrow.string()),
                                   ("uncertain", arrow.bool_()), ("error", arrow.string()), ("reason", arrow.string())])
            with atomic_output(self.output) as tmp:
                parquet.write_table(arrow.table(columns, schema=schema), tmp)


def _remote_videos(uris: list[str]) -> list[str]:
    """The videos behind object-store URIs, listed once so that a rerun can skip the answered ones."""
    from actionrec.cluster import list_videos

    videos = []
    for uri in uris:
        try:
            videos += list_videos(uri)
        except (ImportError, OSError, ValueError) as exc:
            fail(f"{uri}: cannot list it: {exc}", EXIT_USAGE)
    return videos


def _ray_answers(recognizer, videos: list[Path | str], address: Optional[str], top_k: int,
                 actors: Optional[int], gpus: float, threads: Optional[int]):
    from actionrec.cluster import check_ray_installed, ray_predict

    try:
        check_ray_installed()
    except ImportError as exc:
        fail(f"--ray: {exc}", EXIT_NOTHING_RAN)

    return ray_predict(recognizer.model_path, [_key(video) for video in videos], address=address, top_k=top_k,
                       actors=actors, gpus_per_actor=gpus, threads=threads, card=recognizer.card)


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
        console.print(f"    {entry['action']:<28} {entry['confidence']:.1%}")
    for segment in prediction.segments or []:
        console.print(f"    {segment.start_s:7.2f}-{segment.end_s:7.2f} s  {segment.action} ({segment.confidence:.0%})")
    for warning in prediction.warnings:
        console.print(f"    [yellow]warning:[/yellow] {escape(warning)}")


def predict(
    model: Path = typer.Argument(..., help="An exported model.onnx."),
    sources: List[str] = typer.Argument(..., help="Videos: files, folders (searched recursively) or glob patterns "
                                                  "such as 'clips/**/*.mp4'."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many actions to list."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per video, one per line."),
    segments: bool = typer.Option(False, help="Also say where in the video each action happens."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write one row per video to this "
                                          "file (.jsonl, .csv or .parquet); a rerun skips the videos it answered or "
                                          "failed on for good, and tries timeouts and lost workers again."),
    workers: Optional[int] = typer.Option(None, min=0, help="Videos read at once, each in its own process "
                                          "(default: one per core; 0: all in this process)."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads (default: the cores, shared among "
                                                     "workers)."),
    timeout_s: float = typer.Option(300.0, help="A video that takes longer is stopped and reported."),
    ray: bool = typer.Option(False, "--ray", help="Run as a Ray Data pipeline: decoding as CPU tasks, the model in "
                                                   "a pool of actors (needs the ray extra). SOURCES may also be "
                                                   "object-store URIs Ray reads (s3://, gs://)."),
    ray_address: Optional[str] = typer.Option(None, help="The Ray cluster to join (default $RAY_ADDRESS, else a "
                                                         "local Ray)."),
    ray_actors: Optional[int] = typer.Option(None, help="Model actors (default: one per GPU with --ray-gpus, else "
                                                        "one per two CPUs)."),
    ray_gpus: float = typer.Option(0, help="GPUs per model actor (e.g. 1; 0: CPU actors)."),
) -> None:
    """Say which action each video shows. Exit code 0: all answered; 1: some could not be read; 2: a
    wrong command line; 3: nothing could run (the model)."""
    from actionrec.inference import Recognizer

    remote = [source for source in sources if "://" in source]
    if remote and not ray:
        fail(f"{remote[0]}: URIs are read by Ray; add --ray.", EXIT_USAGE)
    if ray and segments:
        fail("--segments is not available with --ray yet: predict timelines locally.", EXIT_USAGE)
    local = expand([source for source in sources if "://" not in source]) if len(remote) < len(sources) else []
    videos: list[Path | str] = [*local, *(_remote_videos(remote) if remote else [])]
    if not videos:
        fail(f"no videos found in {', '.join(sources)} (looked for {', '.join(VIDEO_EXTENSIONS)}).", EXIT_USAGE)
    try:
        recognizer = Recognizer(model, threads=threads)
    except ActionrecError as exc:
        fail(str(exc), EXIT_NOTHING_RAN)
    skipped, kept_rows = 0, None
    if output is not None:
        earlier = _earlier_rows(output)
        settled = _settled(earlier)
        todo = [video for video in videos if _key(video) not in settled]
        redone = {_key(video) for video in todo}
        kept_rows = [row for row in earlier if _row_key(row) not in redone]
        skipped, videos = len(videos) - len(todo), todo
    results = _Results(output, as_json, kept_rows)
    failures: Counter = Counter()
    show_progress = err_console.is_terminal and len(videos) > 1
    progress = Progress(TextColumn("Predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err_console, transient=True) if show_progress else None
    try:
        if progress is not None:
            progress.start()
            task = progress.add_task("videos", total=len(videos))
        if ray:
            answers = _ray_answers(recognizer, videos, ray_address, top_k, ray_actors, ray_gpus, threads)
        else:
            answers = recognizer.predict_many(videos, workers=workers, top_k=top_k, segments=segments,
                                              timeout_s=timeout_s)
        for result in answers:
            results.write(result, progress)
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
        results.close()
    answered_now = len(videos) - sum(failures.values())
    summary = f"{answered_now} answered, {sum(failures.values())} failed"
    if failures:
        summary += " (" + ", ".join(f"{reason}: {count}" for reason, count in failures.most_common()) + ")"
    if skipped:
        summary += f", {skipped} skipped (answered, or failed for good, in {output})"
    if len(videos) + skipped > 1 or output is not None:
        err_console.print(escape(summary + (f"; results in {output}" if output else "")))
    if failures:
        raise typer.Exit(1)


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
        fail(str(exc))
    except KeyboardInterrupt:
        on_event("stopped", f"stopped after {seen['answers']} answers")
