"""Taking an upload off the wire: content type, size limit, read timeouts, raw body or multipart.

Uploads are written to a file as they arrive, so a request's memory does not grow with the
video's size, and a decode worker reads the file where it lies. A client that stops sending, or
sends too slowly to finish within the upload time limit, is answered 408 and its connection
freed: slow bodies cannot hold the server's places for work for long, and none of its places
for prediction (the body is read before one is taken). Everything here raises
`UploadError` with the HTTP status the request gets (400, 408, 413, 415; 503 or 507 when the
server has no room for it) and a reason code.
"""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from actionrec.errors import RequestError, UploadError
from actionrec.serve.settings import UploadLimits, megabytes

ACCEPTED_TYPES_TEXT = "video/* or application/octet-stream"
# A multipart body's text fields are held in memory (the routes read none): a few small ones only.
MAX_FORM_FIELDS = 4
MAX_FIELD_BYTES = 8 * 1024


class UploadForm(MultiPartParser):
    """Starlette's parser, with the file part spooled to disk after 64 KB instead of 1 MB."""

    spool_max_size = 64 * 1024


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def check_headers(request: Request, max_bytes: int, allow_multipart: bool) -> None:
    """Refuse from the headers alone: a type that is not a video, or a declared length over the limit."""
    kind = content_type(request)
    if not (kind in ("", "application/octet-stream") or kind.startswith("video/")
            or (allow_multipart and kind == "multipart/form-data")):
        accepted = ACCEPTED_TYPES_TEXT + (" or multipart/form-data" if allow_multipart else "")
        raise UploadError(415, f"Content-Type {kind!r} is not a video. Send the file's bytes as "
                               f"{accepted} (with curl: -H 'Content-Type: video/mp4').", "not_a_video_type")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)


def too_large(max_bytes: int) -> UploadError:
    return UploadError(413, f"The upload is larger than this server's limit of {megabytes(max_bytes)}. "
                            "Send a shorter or more compressed video.", "upload_too_large")


class UploadBudget:
    """Bytes of uploads in progress across requests (arriving, or on disk awaiting their answer),
    kept under `limit`: an upload that would pass it is refused at once, from its Content-Length,
    or as soon as its streamed body would, so the temporary folder cannot fill up."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextmanager
    def hold(self) -> Iterator[BudgetHold]:
        """What one upload holds of the budget, given back when the block ends."""
        held = BudgetHold(self)
        try:
            yield held
        finally:
            self.used -= held.bytes


class BudgetHold:
    def __init__(self, budget: UploadBudget) -> None:
        self.budget = budget
        self.bytes = 0

    def check_room(self, size: int) -> None:
        """UploadError unless `size` more bytes fit in the budget now: 503 while others hold it, 507
        when they never could (the budget, kept under the disk's free space, is smaller)."""
        if size > self.budget.limit:
            raise UploadError(507, f"This server has room for {megabytes(self.budget.limit)} of uploads at once, "
                                   "less than this one. Send a smaller video.", "storage_full",
                              {"Connection": "close"})
        if self.budget.used + size > self.budget.limit:
            raise UploadError(503, f"The server holds {megabytes(self.budget.used)} of uploads already, near its "
                                   f"limit of {megabytes(self.budget.limit)}. Try again in a few seconds.",
                              "uploads_over_budget", {"Retry-After": "5", "Connection": "close"})

    def grow_to(self, size: int) -> None:
        """Hold `size` bytes in all; UploadError when the budget has not that much left."""
        extra = size - self.bytes
        if extra <= 0:
            return
        self.check_room(extra)
        self.budget.used += extra
        self.bytes += extra


def storage_failure(error: OSError) -> UploadError:
    """A failed write of an upload, as the answer it gets: 507 when the disk (or a file size
    limit) is full, else 503; both say when to try again."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    detail = ("The server has no room to store this upload right now." if full
              else "The server could not store this upload right now.")
    return UploadError(507 if full else 503, f"{detail} Try again later, or send a smaller video.",
                       "storage_full" if full else "storage_error", {"Retry-After": "30", "Connection": "close"})


async def save_video(request: Request, limits: UploadLimits, folder: Path, held: BudgetHold) -> Path:
    """Write the video (the raw body, or the `file` field of a multipart body) to a new file in
    `folder` as it arrives, refusing it as soon as it passes the size limit or the budget `held`
    draws on, or stalls. The caller deletes the file."""
    multipart = content_type(request) == "multipart/form-data"
    copies = 2 if multipart else 1  # a multipart file part is spooled, then copied to `path`
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit():
        held.check_room(int(declared) * copies)  # refused at once when it cannot fit; held as it comes
    path = folder / f"upload-{uuid.uuid4().hex}"
    try:
        if multipart:
            await _save_multipart_file(request, _limited(request, limits, held, copies), path)
        else:
            with open(path, "wb") as out:
                async for chunk in _limited(request, limits, held):
                    out.write(chunk)
        if path.stat().st_size == 0:
            raise UploadError(400, "The upload is empty (0 bytes). Send the video file's contents as the request "
                                   "body.", "empty")
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise storage_failure(exc) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def _limited(request: Request, limits: UploadLimits, held: BudgetHold | None, copies: int = 1
                   ) -> AsyncGenerator[bytes, None]:
    """The body's chunks, abandoned as soon as they pass the size limit or the budget, stall, or
    come too slowly: the last `idle_timeout_s` must always have brought `min_rate` bytes a second,
    so a client cannot send fast at first and then hold its place with a byte now and then."""
    total = 0
    arrivals = deque([(time.monotonic(), 0)])  # (when, bytes so far), back to the window's start
    chunks = request.stream().__aiter__()
    try:
        while True:
            try:
                async with asyncio.timeout(limits.idle_timeout_s):  # no task made for each chunk, as wait_for does
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _too_slow(limits, total) from None
            total += len(chunk)
            if total > limits.max_bytes:
                raise too_large(limits.max_bytes)
            if held is not None:
                held.grow_to(total * copies)
            now = time.monotonic()
            if now - arrivals[-1][0] >= 0.25:  # a sample every quarter second is enough for the rate
                arrivals.append((now, total))
            while len(arrivals) > 1 and arrivals[1][0] <= now - limits.idle_timeout_s:
                arrivals.popleft()  # arrivals[0]: the last one at least a window ago (or the start)
            then, total_then = arrivals[0]
            if now - then >= limits.idle_timeout_s and total - total_then < limits.min_rate * (now - then):
                raise _too_slow(limits, total)
            yield chunk
    except ClientDisconnect:
        raise UploadError(400, "The upload was interrupted before it finished.", "upload_interrupted") from None


async def small_json(request: Request, idle_timeout_s: float, min_rate: float, max_bytes: int = 16 * 1024) -> dict:
    """A small JSON object body ({} when there is none), read with a size limit and the uploads'
    stall rule; UploadError (413, 408, 400) or RequestError 422 when it is not one."""
    limits = UploadLimits(max_bytes, idle_timeout_s, min_rate)
    body = b"".join([chunk async for chunk in _limited(request, limits, None)])
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise RequestError(422, "The body is not JSON. Send a JSON object, e.g. {\"name\": \"my-actions\"}.",
                           "invalid_parameters") from None
    if not isinstance(data, dict):
        raise RequestError(422, "The body must be a JSON object, e.g. {\"name\": \"my-actions\"}.",
                           "invalid_parameters")
    return data


def _too_slow(limits: UploadLimits, received: int) -> UploadError:
    return UploadError(408, f"The upload stalled or came too slowly ({received:,} bytes arrived; this server "
                            f"needs at least {limits.min_rate / 1024:g} KB/s in every {limits.idle_timeout_s:g} s). "
                            "Send it again over a faster connection.",
                       "upload_timeout", {"Connection": "close"})


async def _save_multipart_file(request: Request, body: AsyncGenerator[bytes, None], path: Path) -> None:
    """The `file` field of a multipart body, copied to `path`."""
    parser = UploadForm(request.headers, body, max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise UploadError(400, f"The multipart body could not be read: {exc.message}", "bad_multipart") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, "The multipart body has no `file` field. Send the video as a file "
                                   "field named `file`, or send its raw bytes as the body.", "bad_multipart")
        await upload.seek(0)
        with open(path, "wb") as out:
            await run_in_threadpool(shutil.copyfileobj, upload.file, out)
    finally:
        await form.close()
