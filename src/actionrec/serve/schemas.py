"""The API's answers as pydantic models, the body every error has, and how raw-body requests and
errors are documented."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

RETRY_AFTER_S = 2


class Answer(BaseModel):
    """The original contract: exactly these three keys."""

    action: str
    confidence: float
    message: str


class ScoredAction(BaseModel):
    action: str
    confidence: float


class TimelineSegment(BaseModel):
    start_s: float
    end_s: float
    action: str
    confidence: float


class UnknownCheck(BaseModel):
    """Whether the video shows none of the model's actions: `unknown` when `value` (the `score`:
    `feature_similarity` or `max_probability`) is under `threshold`."""

    score: str
    value: float
    threshold: float
    unknown: bool


class ModelRef(BaseModel):
    name: str
    version: str


class DetailedAnswer(Answer):
    top_k: list[ScoredAction]
    segments: list[TimelineSegment] | None
    video: dict[str, Any]
    timings_ms: dict[str, float]
    model: ModelRef
    uncertain: bool
    unknown_check: UnknownCheck | None = None
    warnings: list[str]


def raw_body_openapi(multipart: bool = False) -> dict:
    binary = {"schema": {"type": "string", "format": "binary"}}
    content: dict[str, Any] = {"video/mp4": binary, "video/*": binary, "application/octet-stream": binary}
    if multipart:
        content["multipart/form-data"] = {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                       "required": ["file"]}
        }
    return {"requestBody": {"required": True, "description": "The video file's bytes.", "content": content}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/json": {"example": {"detail": "..."}}}}
    for status, text in (
        (400, "Empty body, or a multipart request without a `file` field"),
        (401, "An API key is required and was missing or wrong"),
        (413, "The upload is larger than the server's limit"),
        (415, "Not a video content type"),
        (422, "Not a video that can be decoded (damaged, truncated, too long, too large)"),
        (503, "The server is busy: retry after the Retry-After header's seconds"),
    )
}


def error_answer(status: int, detail: str, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The body every error has: `detail` for people (and for clients of the original contract),
    `reason`, a stable code to branch on (the same codes `actionrec predict --json` prints)."""
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)} | (headers or {})
    return JSONResponse({"detail": detail, "reason": reason}, status_code=status, headers=headers)
