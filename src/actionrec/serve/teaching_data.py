"""What teaching keeps in the folder the server is given (`--data-dir`, ACTIONREC_DATA_DIR), and the
switch of the served model without a restart (`actionrec.serve.teaching` is the HTTP API on it):

    examples/ACTION/ID.EXT + ID.json   a clip, and its facts written after it (a clip without its
                                       facts was never acknowledged, and is not listed)
    jobs/ID.json                       each teaching job's state, written at every step
    jobs/ID/                           the clips a running job teaches on, as they were when it
                                       started (`actionrec.serve.teach_jobs`)
    models/ID.onnx                     taught models (written whole, then renamed into place)
    served.json                        the model being served, restored at start

Files are written under a temporary name, flushed to disk and renamed (`actionrec.serve.durable`),
so a server killed at any moment keeps every clip and job it acknowledged; a job cut short is
started again when the server comes back. Teaching runs in a child process: a clip that crashes the
decoder costs that process, and the server goes on answering.

Action names are compared by `actionrec.teaching.names.name_key` (case, width and look-alike
letters aside), and kept as written first. The limits on actions and clips are checked when a
clip is sent (before its body is read) and again as it is counted, right before it is written:
uploads sent at once cannot all pass a check made before any of them was written.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from actionrec.errors import ModelFileError, RequestError
from actionrec.serve import uploads
from actionrec.serve.durable import durable_write, read_json, write_json
from actionrec.serve.schemas import for_clients
from actionrec.serve.teach_jobs import (
    count_clips,
    has_snapshot,
    name_unlisted_models,
    read_examples,
    remove_snapshots,
    take_snapshot,
    teach_in_child,
)
from actionrec.teaching.names import TeachError, check_action_name, model_id_for, name_key, valid_id

if TYPE_CHECKING:
    from actionrec.modelfile.card import ModelCard

log = logging.getLogger("actionrec.server")

BASE_ID, TEACH_BASE_ID = "base", "teach-base"
RUNNING = ("queued", "reading", "fitting", "writing")


class Teaching:
    """The examples, jobs and models in a server's data folder, and the switch of the served model."""

    def __init__(self, service: Any, data_dir: Path | None, base_path: Path | None) -> None:
        self.service = service
        self.settings = service.settings
        self.data_dir = data_dir
        self.base_path = base_path  # the model whose encoder teaching reuses
        self.started_path = Path(service.recognizer.model_path)  # the model the server started with: "base"
        self.note = getattr(self.settings, "teach_note", None)
        self.running: asyncio.Task | None = None
        self.switching = asyncio.Lock()
        self.starting = asyncio.Lock()  # one job set up at a time: its clips are set aside off the event loop
        self.writing: Counter[Path] = Counter()  # clips being written, by their action's folder
        if data_dir is not None:
            for sub in ("examples", "jobs", "models"):
                (data_dir / sub).mkdir(parents=True, exist_ok=True)

    # -- where things are --------------------------------------------------------------------

    def _require(self) -> Path:
        if self.data_dir is None:
            raise RequestError(409, "Teaching is off on this server: start it with --data-dir DIR (or set "
                                    "ACTIONREC_DATA_DIR), a folder where example clips and taught models are kept.",
                               "teaching_off")
        if self.base_path is None:
            raise RequestError(409, "This server was given no model file to teach from.", "teaching_off")
        return self.data_dir

    def _checked_name(self, action: str) -> str:
        try:
            return check_action_name(action)
        except TeachError as exc:
            raise RequestError(422, str(exc), "invalid_action_name") from None

    def _folders(self) -> dict[str, Path]:
        """{name key: the action's folder}; of look-alike folders (an older server's), the first by name."""
        found: dict[str, Path] = {}
        for folder in sorted((self._require() / "examples").iterdir()):
            if folder.is_dir():
                found.setdefault(name_key(folder.name), folder)
        return found

    def _action_dir(self, action: str) -> Path:
        """The folder of `action`: the one of exactly that name where there is one (an older server may
        hold look-alikes side by side, and a DELETE must not take another's clips), else its look-alike."""
        name = self._checked_name(action)
        exact = self._require() / "examples" / name
        folder = exact if exact.is_dir() else self._folders().get(name_key(name))
        if folder is None:
            raise RequestError(404, f"No action named {action!r} has example clips.", "not_found")
        return folder

    def _room_for(self, action: str) -> Path:
        """The folder a new clip of `action` goes to (an action's look-alike names share the one
        written first); 409 when the server holds its limit of actions, or the action its limit of
        clips, counting the clips being written. No await inside: check and count are one step."""
        name = self._checked_name(action)
        key = name_key(name)
        writing = {name_key(folder.name): folder for folder in self.writing}
        folder = self._folders().get(key) or writing.get(key) or self._require() / "examples" / name
        counts = count_clips(self._require() / "examples", name_key)
        for being_written, count in self.writing.items():
            counts[name_key(being_written.name)] += count
        if not counts[key] and len(+counts) >= self.settings.teach_max_actions:
            raise RequestError(409, f"This server holds {len(+counts)} actions already, its limit. Remove one "
                                    "(DELETE /v1/teach/examples/ACTION) before adding another.", "too_many_actions")
        if counts[key] >= self.settings.teach_max_clips:
            raise RequestError(409, f"{folder.name!r} has {counts[key]} clips already, the limit for an action. "
                                    "Remove one before adding another; a few good clips teach as well as many.",
                               "too_many_clips")
        return folder

    def examples(self) -> dict[str, list[dict]]:
        """{action: its acknowledged clips' facts}, actions by name."""
        return read_examples(self._require() / "examples")

    def _base_card(self) -> ModelCard:
        from actionrec.modelfile.card import read_card

        if self.base_path is None:
            raise RequestError(409, "This server was given no model file to teach from.", "teaching_off")
        try:
            return read_card(self.base_path)
        except ModelFileError as exc:  # checked at start: changed since
            log.warning("the teaching base cannot be read: %s", exc)
            problem = for_clients(str(exc), (self.base_path, self.base_path.name))
            raise RequestError(409, f"{problem} Teaching is off until the file is put back; the served model "
                                    "still answers.", "teach_base_unusable") from None

    def about(self) -> dict[str, Any]:
        """What the page shows of teaching here: what it builds on, and any note from the operator."""
        try:
            card, error = (self._base_card() if self.base_path is not None else None), None
        except RequestError as exc:
            card, error = None, str(exc)
        rule = None if card is None else card.unknown_rule
        return {"enabled": self.data_dir is not None and card is not None, "note": self.note, "error": error,
                "base": None if card is None else {"name": card.name, "version": card.version,
                                                   "backbone_weights": card.model.get("backbone_weights"),
                                                   "labels": card.labels,
                                                   # keep_base needs the class means of the base's own clips
                                                   "can_keep_actions": rule is not None
                                                   and rule.has_training_means}}

    def limits(self) -> dict[str, Any]:
        from actionrec.teaching.flow import MAX_CLIP_S
        from actionrec.teaching.names import MAX_NAME

        return {"max_actions": self.settings.teach_max_actions, "max_clips_per_action": self.settings.teach_max_clips,
                "max_clip_mb": self.settings.teach_max_clip_mb, "max_clip_s": MAX_CLIP_S, "max_name": MAX_NAME}

    # -- examples ----------------------------------------------------------------------------

    async def add_example(self, request: Request, action: str) -> dict:
        self._room_for(action)  # refused before the body is read when the limits are reached already
        max_bytes = int(self.settings.teach_max_clip_mb * 1024 * 1024)
        async with self.service.received_upload(request, max_bytes, allow_multipart=True) as video:
            async with self.service.slot():
                duration = await self.service.check_clip(video)
            folder = self._room_for(action)  # again, and counted at once: other uploads may have come in
            self.writing[folder] += 1
            try:
                facts = await self._keep(video, folder, _suffix(request), duration)
            finally:
                self.writing[folder] -= 1
                if not self.writing[folder]:
                    del self.writing[folder]
        log.info("example clip %s of %r kept (%d bytes, %.1f s)", facts["id"], folder.name, facts["bytes"], duration)
        return facts

    async def _keep(self, video: Path, folder: Path, suffix: str, duration: float) -> dict:
        """Write the clip, then its facts (it is acknowledged from there); 507 when the disk refuses."""
        clip_id = uuid.uuid4().hex[:12]
        file_name = f"{clip_id}{suffix}"
        facts = {"id": clip_id, "action": folder.name, "file": file_name, "bytes": video.stat().st_size,
                 "duration_s": round(duration, 3), "added_at": time.time()}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(durable_write, folder / file_name, lambda tmp: shutil.copyfile(video, tmp))
            await asyncio.to_thread(write_json, folder / f"{clip_id}.json", facts)  # acknowledged from here
        except OSError as exc:
            (folder / file_name).unlink(missing_ok=True)
            log.warning("an example clip could not be kept in %s (%s)", folder, exc)
            raise uploads.storage_failure(exc) from None
        return facts

    def remove_example(self, action: str, clip_id: str | None) -> dict:
        folder = self._action_dir(action)
        if clip_id is None:
            shutil.rmtree(folder)
            return {"removed": folder.name}
        facts_path = folder / f"{clip_id}.json"
        facts = read_json(facts_path) if valid_id(clip_id) else None
        if facts is None:
            raise RequestError(404, f"{folder.name!r} has no clip {clip_id!r}.", "not_found")
        facts_path.unlink()  # unlisted from here; then the clip itself
        (folder / facts.get("file", "")).unlink(missing_ok=True)
        if not any(folder.glob("*.json")):
            shutil.rmtree(folder, ignore_errors=True)
        return {"removed": clip_id, "action": folder.name}

    # -- jobs ----------------------------------------------------------------------------------

    def jobs(self) -> list[dict]:
        root = self._require() / "jobs"
        found = [job for job in (read_json(p) for p in root.glob("*.json")) if job]
        return sorted(found, key=lambda job: job.get("created_at", 0), reverse=True)

    def job(self, job_id: str) -> dict:
        job = read_json(self._require() / "jobs" / f"{job_id}.json") if valid_id(job_id) else None
        if job is None:
            raise RequestError(404, f"No teaching job {job_id!r}.", "not_found")
        return job

    async def start_job(self, name: str | None, keep_base: bool) -> dict:
        async with self.starting:
            return await self._start_job(name, keep_base)

    async def _start_job(self, name: str | None, keep_base: bool) -> dict:
        root = self._require()
        if self.running is not None and not self.running.done():
            raise RequestError(409, "The server is teaching already; follow that job (GET /v1/teach/jobs) and "
                                    "start again when it is done.", "teaching_busy")
        try:
            name = check_action_name(name or "taught")
        except TeachError as exc:
            raise RequestError(422, str(exc).replace("action", "model"), "invalid_model_name") from None
        base_labels = self._base_card().labels  # a base gone bad since start: 409, before anything is kept
        examples = self.examples()
        if len(examples) + (len(base_labels) if keep_base else 0) < 2:
            raise RequestError(422, f"Teaching needs clips of at least two actions; this server has "
                                    f"{len(examples)} ({', '.join(examples) or 'none'}). Add clips of another "
                                    "(one may be 'nothing', standing still).", "too_few_actions")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        model_id = model_id_for(name, stamp)
        job_id = uuid.uuid4().hex[:12]
        job = {"id": job_id, "state": "queued", "done": 0,
               "total": sum(len(clips) for clips in examples.values()), "name": name, "keep_base": keep_base,
               "model": model_id, "created_at": time.time(), "updated_at": time.time(),
               "actions": {action: len(clips) for action, clips in examples.items()}}
        snapshot = root / "jobs" / job_id
        try:  # the clips as they are now: a DELETE during the job does not change what it teaches on
            await asyncio.to_thread(take_snapshot, root / "examples", snapshot, examples)
            await asyncio.to_thread(write_json, root / "jobs" / f"{job_id}.json", job)  # acknowledged from here
        except OSError as exc:
            await asyncio.to_thread(shutil.rmtree, snapshot, True)
            log.warning("a teaching job's clips could not be kept in %s (%s)", root / "jobs", exc)
            raise uploads.storage_failure(exc) from None
        self.running = asyncio.get_running_loop().create_task(self._run(job))
        return job

    async def _run(self, job: dict) -> None:
        root = self._require().absolute()
        job_file, snapshot = root / "jobs" / f"{job['id']}.json", root / "jobs" / job["id"]
        if not has_snapshot(snapshot):  # a job an older server started: the clips as they are now
            try:
                await asyncio.to_thread(take_snapshot, root / "examples", snapshot, self.examples())
            except OSError as exc:
                log.warning("teaching job %s: its clips could not be kept in %s (%s)", job["id"], snapshot, exc)
                write_json(job_file, job | {"state": "failed", "reason": "teach_failed", "updated_at": time.time(),
                                            "error": f"The job's clips could not be kept ({exc.strerror}). Free "
                                                     "some disk space and start it again."})
                return
        out = root / "models" / f"{job['model']}.onnx"
        context = multiprocessing.get_context("spawn")
        process = context.Process(target=teach_in_child, name="actionrec-teach", daemon=True,
                                  args=(str(self.base_path), str(snapshot), str(out), job["name"], job["keep_base"],
                                        str(job_file), str(root)))
        started = time.perf_counter()
        process.start()
        try:
            await asyncio.to_thread(process.join)
        except asyncio.CancelledError:
            process.kill()
            raise
        final = read_json(job_file) or job
        if final.get("state") in RUNNING:
            final.update(state="failed", reason="teach_failed", updated_at=time.time(),
                         error=f"The teaching process stopped unexpectedly (exit code {process.exitcode}). Start "
                               "again; if it fails again, a clip may be damaged: remove the last ones added.")
            write_json(job_file, final)
        await asyncio.to_thread(shutil.rmtree, snapshot, True)
        log.info("teaching job %s %s in %.1f s%s", job["id"], final["state"], time.perf_counter() - started,
                 f": {final.get('error')}" if final["state"] == "failed" else f": model {final.get('model')}")

    async def resume(self) -> None:
        """At start: serve the model chosen last, and start again a job the last server did not finish."""
        if self.data_dir is None:
            return
        name_unlisted_models(self.data_dir / "models")
        chosen = read_json(self.data_dir / "served.json")
        if chosen and chosen.get("model") not in (None, BASE_ID):
            try:
                await self.switch(chosen["model"], remember=False)
                log.info("serving %s, the model chosen last (POST /v1/models/base/serve goes back)", chosen["model"])
            except RequestError as exc:
                log.warning("could not serve the model chosen last (%s); serving the base", exc)
        cut_short = [job for job in self.jobs() if job.get("state") in RUNNING]
        for job in cut_short[1:]:
            job.update(state="failed", reason="teach_failed", error="The server stopped during this job.")
            write_json(self.data_dir / "jobs" / f"{job['id']}.json", job)
        restarting = cut_short[0]["id"] if cut_short and self.base_path is not None else None
        await asyncio.to_thread(remove_snapshots, self.data_dir / "jobs", but=restarting)
        if restarting is not None:
            job = cut_short[0] | {"state": "queued", "done": 0, "restarted": True}
            write_json(self.data_dir / "jobs" / f"{job['id']}.json", job)
            log.info("teaching job %s was cut short when the server stopped: starting it again", job["id"])
            self.running = asyncio.get_running_loop().create_task(self._run(job))

    async def stop(self) -> None:
        if self.running is not None and not self.running.done():
            self.running.cancel()

    # -- models --------------------------------------------------------------------------------

    def model_path(self, model_id: str) -> Path:
        if model_id == BASE_ID:
            return self.started_path
        if model_id == TEACH_BASE_ID and self.base_path is not None:
            return self.base_path
        path = self.data_dir / "models" / f"{model_id}.onnx" if self.data_dir and valid_id(model_id) else None
        if path is None or not path.is_file():
            raise RequestError(404, f"No model {model_id!r} on this server (GET /v1/models lists them).", "not_found")
        return path

    def models(self) -> dict:
        from actionrec.modelfile.card import read_card

        served = self.service.recognizer.model_path
        listed: list[dict[str, Any]] = []
        paths = [(BASE_ID, self.started_path)]
        if self.base_path is not None and Path(self.base_path).resolve() != self.started_path.resolve():
            paths.append((TEACH_BASE_ID, Path(self.base_path)))
        if self.data_dir is not None:
            paths += [(p.stem, p) for p in sorted((self.data_dir / "models").glob("*.onnx"))
                      if valid_id(p.stem)]  # what model_path takes; not a file being written (".NAME")
        for model_id, path in paths:
            try:
                card = read_card(path)
            except Exception:  # noqa: BLE001  a damaged file is listed as such, not a 500
                listed.append({"id": model_id, "error": "this file cannot be read"})
                continue
            listed.append({"id": model_id, "name": card.name, "version": card.version, "labels": card.labels,
                           "taught": card.model.get("taught"), "size_bytes": path.stat().st_size,
                           "served": path.resolve() == Path(served).resolve(), "file": f"/v1/models/{model_id}/file"})
        return {"served": next((m["id"] for m in listed if m.get("served")), None), "models": listed}

    async def switch(self, model_id: str, remember: bool = True) -> dict:
        path = self.model_path(model_id)
        async with self.switching:
            try:
                await self.service.switch_model(path)
            except ModelFileError as exc:
                raise RequestError(422, for_clients(str(exc), (path, path.name)), "model_unusable") from None
            if remember and self.data_dir is not None:
                await asyncio.to_thread(write_json, self.data_dir / "served.json", {"model": model_id})
        return {"served": model_id, "model": self.service.recognizer.describe()}


def _suffix(request: Request) -> str:
    kind = uploads.content_type(request)
    return {"video/webm": ".webm", "video/quicktime": ".mov", "video/x-msvideo": ".avi",
            "video/x-matroska": ".mkv"}.get(kind, ".mp4")
