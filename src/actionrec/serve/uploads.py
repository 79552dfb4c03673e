"""Taking an upload off the wire: content type, size limit, raw body or multipart `file` field.

Everything here raises `UploadError` with the HTTP status the request gets (400, 413, 415).
"""

from __future__ import annotations

from fastapi import HTTPException, Request
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


async def read_video(request: Request, max_bytes: int) -> bytes:
    """The video's bytes: the raw body, or the `file` field of a multipart body."""
    body = await _read_body(request, max_bytes)
    if content_type(request) == "multipart/form-data":
        body = await _multipart_file(request, body)
    if not body:
        raise UploadError(400, "The upload is empty (0 bytes). Send the video file's contents as the request body.")
    return body


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The body, read in chunks and abandoned as soon as it passes the size limit."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise too_large(max_bytes)
    except ClientDisconnect:
        raise UploadError(400, "The upload was interrupted before it finished.") from None
    return bytes(body)


async def _multipart_file(request: Request, body: bytes) -> bytes:
    """The `file` field of a multipart body that was already read (within the size limit)."""

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    form_request = Request(request.scope, replay)
    try:
        form = await form_request.form(max_files=1, max_fields=10)
    except HTTPException as exc:
        raise UploadError(400, f"The multipart body could not be read: {exc.detail}") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, "The multipart body has no `file` field. Send the video as a file "
                                   "field named `file`, or send its raw bytes as the body.")
        return await upload.read()
    finally:
        await form.close()
