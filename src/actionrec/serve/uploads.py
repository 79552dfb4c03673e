"""Taking an upload off the wire: content type, size limit, read timeouts, raw body or multipart.

Uploads are written to a file as they arrive, so a request's memory does not grow with the
video's size, and a decode worker reads the file where it lies. A client that stops sending, or
sends too slowly to finish within the upload time limit, is answered 408 and its connection
freed: slow bodies cannot hold the server's places for work for long, and none of its places
for prediction (the body is read before one is taken). Everything here raises
`UploadError` with the HTTP status the request gets (400, 408, 413, 415) and a reason code.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from actionrec.errors import UploadError
from actionrec.serve.settings import UploadLimits, megabytes

ACCEPTED_TYPES_TEXT = "video/* or application/octet-stream"


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


async def save_video(request: Request, limits: UploadLimits, folder: Path) -> Path:
    """Write the video (the raw body, or the `file` field of a multipart body) to a new file in
    `folder` as it arrives, refusing it as soon as it passes the size limit or stalls. The caller
    deletes the file."""
    path = folder / f"upload-{uuid.uuid4().hex}"
    try:
        if content_type(request) == "multipart/form-data":
            await _save_multipart_file(request, _limited(request, limits), path)
        else:
            with open(path, "wb") as out:
                async for chunk in _limited(request, limits):
                    out.write(chunk)
        if path.stat().st_size == 0:
            raise UploadError(400, "The upload is empty (0 bytes). Send the video file's contents as the request "
                                   "body.", "empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def _limited(request: Request, limits: UploadLimits) -> AsyncIterator[bytes]:
    """The body's chunks, abandoned as soon as they pass the size limit, stall or come too slowly."""
    total = 0
    started = time.monotonic()
    chunks = request.stream().__aiter__()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), timeout=limits.idle_timeout_s)
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                raise _too_slow(limits, total) from None
            total += len(chunk)
            if total > limits.max_bytes:
                raise too_large(limits.max_bytes)
            elapsed = time.monotonic() - started
            if elapsed > limits.idle_timeout_s and total < limits.min_rate * elapsed:
                raise _too_slow(limits, total)
            yield chunk
    except ClientDisconnect:
        raise UploadError(400, "The upload was interrupted before it finished.", "upload_interrupted") from None


def _too_slow(limits: UploadLimits, received: int) -> UploadError:
    return UploadError(408, f"The upload stalled or came too slowly ({received:,} bytes arrived; this server "
                            f"needs at least {limits.min_rate / 1024:g} KB/s, with no pause over "
                            f"{limits.idle_timeout_s:g} s). Send it again over a faster connection.",
                       "upload_timeout", {"Connection": "close"})


async def _save_multipart_file(request: Request, body: AsyncIterator[bytes], path: Path) -> None:
    """The `file` field of a multipart body, copied to `path`."""
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=10)
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
