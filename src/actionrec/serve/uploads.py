"""Taking an upload off the wire: content type, size limit, raw body or multipart `file` field.

Uploads are written to a file as they arrive, so a request's memory does not grow with the
video's size, and a decode worker reads the file where it lies. Everything here raises
`UploadError` with the HTTP status the request gets (400, 413, 415).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from actionrec.errors import UploadError
from actionrec.serve.settings import megabytes

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
                               f"{accepted} (with curl: -H 'Content-Type: video/mp4').")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)


def too_large(max_bytes: int) -> UploadError:
    return UploadError(413, f"The upload is larger than this server's limit of {megabytes(max_bytes)}. "
                            "Send a shorter or more compressed video.")


async def save_video(request: Request, max_bytes: int, folder: Path) -> Path:
    """Write the video (the raw body, or the `file` field of a multipart body) to a new file in
    `folder` as it arrives, refusing it as soon as it passes `max_bytes`. The caller deletes it."""
    path = folder / f"upload-{uuid.uuid4().hex}"
    try:
        if content_type(request) == "multipart/form-data":
            await _save_multipart_file(request, _limited(request, max_bytes), path)
        else:
            with open(path, "wb") as out:
                async for chunk in _limited(request, max_bytes):
                    out.write(chunk)
        if path.stat().st_size == 0:
            raise UploadError(400, "The upload is empty (0 bytes). Send the video file's contents as the request "
                                   "body.")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def _limited(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    """The body's chunks, abandoned as soon as they pass the size limit."""
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise too_large(max_bytes)
            yield chunk
    except ClientDisconnect:
        raise UploadError(400, "The upload was interrupted before it finished.") from None


async def _save_multipart_file(request: Request, body: AsyncIterator[bytes], path: Path) -> None:
    """The `file` field of a multipart body, copied to `path`."""
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise UploadError(400, f"The multipart body could not be read: {exc.message}") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, "The multipart body has no `file` field. Send the video as a file "
                                   "field named `file`, or send its raw bytes as the body.")
        await upload.seek(0)
        with open(path, "wb") as out:
            await run_in_threadpool(shutil.copyfileobj, upload.file, out)
    finally:
        await form.close()
