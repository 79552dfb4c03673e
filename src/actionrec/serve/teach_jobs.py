"""The example clips, a teaching job's clips and the process that teaches on them
(`actionrec.serve.teaching_data` takes the clips, starts jobs and keeps their records):

    examples/ACTION/ID.mp4       an example clip, and its facts (acknowledged once these are written)
    examples/ACTION/ID.json
    jobs/ID.json                 the job's record: its state, written at every step
    jobs/ID/ACTION/FILE          the clips the job teaches on: hard links to the example clips as they
    jobs/ID/clips.json           were when it started (copies where links cannot be made), and their
                                 order; removed when the job ends

A job teaches on this snapshot, so a clip or an action removed during a job is still in the model
it makes (the next job goes without it). What a job record says (its error, the clips it skipped)
names clips as ACTION/FILE and models by id: never a folder of the server.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from actionrec.serve.durable import read_json, write_json
from actionrec.teaching.names import valid_id

MANIFEST = "clips.json"
log = logging.getLogger("actionrec.server")


def read_examples(examples_dir: Path) -> dict[str, list[dict]]:
    """{action: its acknowledged clips' facts, oldest first}, actions by name."""
    found: dict[str, list[dict]] = {}
    for folder in sorted(examples_dir.iterdir(), key=lambda p: p.name.lower()):
        if not folder.is_dir():
            continue
        clips = [facts for facts in (read_json(p) for p in sorted(folder.glob("*.json")))
                 if facts and (folder / facts.get("file", "")).is_file()]
        if clips:
            found[folder.name] = sorted(clips, key=lambda c: c.get("added_at", 0))
    return found


def count_clips(examples_dir: Path, key: Callable[[str], str]) -> Counter[str]:
    """{key(action): its clips}, their records counted unread: a few ms for the largest limits, where
    reading every record took 70 (on the event loop, at every upload)."""
    counts: Counter[str] = Counter()
    for folder in examples_dir.iterdir():
        if folder.is_dir():
            with os.scandir(folder) as entries:
                found = sum(entry.name.endswith(".json") and not entry.name.startswith(".") for entry in entries)
            if found:
                counts[key(folder.name)] += found
    return counts


def name_unlisted_models(models_dir: Path) -> None:
    """Log each model file kept by an older server under a name that is no model id (which could
    start with "_"): it is not listed or served, and the log says what to rename it to."""
    for unlisted in sorted(models_dir.glob("[!.]*.onnx")):  # ".NAME": a file being written
        if not valid_id(unlisted.stem):
            suggested = re.sub(r"[^A-Za-z0-9._-]+", "-", unlisted.stem).strip("._-")[:80] or "model"
            log.warning("%s is not listed or served: its name is not a model id (a letter or digit, then letters, "
                        "digits and . _ -). Rename it, e.g. to %s.onnx, to list and serve it", unlisted, suggested)


def remove_snapshots(jobs_dir: Path, but: str | None) -> None:
    """Remove the clips set aside for jobs that ended or never began: every snapshot `but` one."""
    for folder in jobs_dir.iterdir():
        if folder.is_dir() and folder.name != but:
            shutil.rmtree(folder, ignore_errors=True)


def take_snapshot(examples_dir: Path, folder: Path, examples: dict[str, list[dict]]) -> None:
    """Keep in `folder` the clips of `examples` ({action: its clips' facts}, as `Teaching.examples`
    lists them) that are in `examples_dir`, and their order. OSError (and nothing kept) when it cannot."""
    order: dict[str, list[str]] = {}
    try:
        for action, clips in examples.items():
            (folder / action).mkdir(parents=True, exist_ok=True)
            for clip in clips:
                source, target = examples_dir / action / clip["file"], folder / action / clip["file"]
                target.unlink(missing_ok=True)
                try:
                    os.link(source, target)
                except OSError:  # a file system without hard links
                    shutil.copyfile(source, target)
                order.setdefault(action, []).append(clip["file"])
        write_json(folder / MANIFEST, order)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def has_snapshot(folder: Path) -> bool:
    return read_json(folder / MANIFEST) is not None


def snapshot_examples(folder: Path) -> dict[str, list[str]]:
    """{action: its clips' paths} of a snapshot, in the order it was taken."""
    order = read_json(folder / MANIFEST) or {}
    return {action: [str(folder / action / name) for name in names] for action, names in order.items()}


def hiding_paths(data_dir: Path, snapshot: Path, base: Path) -> Callable[[str], str]:
    """What turns a message into one for API clients: the snapshot's clips named ACTION/FILE, other
    paths in the data folder made relative to it, and the base model named by its file name."""
    def forms(path: Path) -> list[str]:
        return list(dict.fromkeys((str(path.absolute()), str(path.resolve()))))

    replacements = [(form + os.sep, "") for path in (snapshot, data_dir) for form in forms(path)]
    replacements += [(form, base.name) for form in forms(base)]

    def hide(text: str) -> str:
        for form, shown in replacements:
            text = text.replace(form, shown)
        return text

    return hide


def teach_in_child(base: str, snapshot: str, out: str, name: str, keep_base: bool, job_file: str,
                   data_dir: str) -> None:
    """What the teaching process runs: `teach` on the job's snapshot, its progress and its outcome
    written to `job_file`."""
    from actionrec.errors import ActionrecError
    from actionrec.teaching.flow import teach

    job = read_json(Path(job_file)) or {}
    hide = hiding_paths(Path(data_dir), Path(snapshot), Path(base))

    def progress(stage: str, done: int, total: int) -> None:
        job.update(state=stage, done=done, total=total, updated_at=time.time())
        write_json(Path(job_file), job)

    try:
        result = teach(base, snapshot_examples(Path(snapshot)), out, name=name, keep_base=keep_base,
                       progress=progress)
    except ActionrecError as exc:
        job.update(state="failed", error=hide(str(exc)), reason=getattr(exc, "reason", "cannot_teach"))
    except Exception as exc:  # noqa: BLE001  the server logs it; the job says it failed
        job.update(state="failed", error=hide(f"Teaching failed unexpectedly ({type(exc).__name__}: {exc})."),
                   reason="teach_failed")
    else:
        summary = result.summary() | {"model": Path(out).stem}
        summary["skipped"] = {hide(path): hide(why) for path, why in result.skipped.items()}
        job.update(state="done", model=Path(out).stem, result=summary)
    job["updated_at"] = time.time()
    write_json(Path(job_file), job)
