"""The API's answers as pydantic models, each made from a prediction in one place (`from_prediction`),
the body every error has, and how raw-body requests and errors are documented. The answer's parts
(scored actions, segments, video facts, the unknown check, the explanation) are the prediction's own typed
values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from actionrec.errors import VideoError
from actionrec.modelfile.unknown import UnknownCheck, unsure_warning
from actionrec.runtime.answer import Explanation, Prediction, RegionAnswer, ScoredAction, VideoFacts
from actionrec.runtime.segments import Segment

RETRY_AFTER_S = 2


class Answer(BaseModel):
    """The original contract: exactly these three keys."""

    action: str
    confidence: float
    message: str

    @classmethod
    def from_prediction(cls, prediction: Prediction) -> Answer:
        return cls(action=prediction.action, confidence=prediction.confidence, message="Success")


class ModelRef(BaseModel):
    name: str
    version: str


class WarningDetail(BaseModel):
    """One of `warnings` with a stable code to branch on: `unsure` (the answer is `uncertain`: the
    video may show none of the model's actions), `decoding` (reading the video met a problem, e.g. a
    stream that broke part way, or seeking that failed)."""

    code: Literal["unsure", "decoding"]
    text: str


class DetailedAnswer(Answer):
    top_k: list[ScoredAction]
    segments: list[Segment] | None
    video: VideoFacts
    timings_ms: dict[str, float]
    model: ModelRef
    uncertain: bool
    unknown_check: UnknownCheck | None = None
    regions: list[RegionAnswer] | None = Field(None, description="With `regions`: each region's answer (id, box, "
                                               "boxes of a track over time, action, confidence, top_k, uncertain).")
    warnings: list[str]
    warning_details: list[WarningDetail] = Field(default_factory=list,
                                                 description="`warnings` in the same order, each with its code.")
    explanation: Explanation | None = Field(None, description="With `explain=true`: why the answer is `action`. "
                                            "`moments` (time_s, weight: larger = more evidence, negative = against) "
                                            "and `map` (rows x cols weights over the whole frame as shown), or "
                                            "`map` null and the warning code `no_map` for files without frame maps.")

    @classmethod
    def from_prediction(  # type: ignore[override]  # the detailed answer also needs the request's model and time
            cls, prediction: Prediction, model: ModelRef, num_labels: int, total_ms: float) -> DetailedAnswer:
        """The answer of /v1/predictions: the prediction's fields as they are (the one place a
        prediction becomes this schema), the total time of the request, the model, and each warning
        with its code: reading the video's first, then the unsure answer's, in words for
        `num_labels` actions."""
        answer = prediction.to_dict()
        notes = [WarningDetail(code="decoding", text=text) for text in prediction.warnings]
        if prediction.uncertain and prediction.unknown_check is not None:  # uncertain comes from the check
            notes.append(WarningDetail(code="unsure", text=unsure_warning(prediction.unknown_check,
                                                                          prediction.confidence, num_labels)))
        return cls(**answer | {"message": "Success", "segments": answer["segments"] or None,
                               "timings_ms": answer["timings_ms"] | {"total": round(total_ms, 1)}, "model": model,
                               "warnings": [note.text for note in notes], "warning_details": notes})


class VideoProblem(BaseModel):
    """A 422 of /v1/predictions: the error body; one about the video itself adds `problem`."""

    detail: str
    reason: str
    problem: str | None = Field(None, description="What is wrong with the video, as a sentence that does not "
                                                  "name it (where `detail` starts \"the uploaded video: \").")


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


# /v1/predictions documents the `problem` its answers about the video add.
V1_ERROR_RESPONSES = ERROR_RESPONSES | {422: {
    "description": "Not a video that can be decoded (damaged, truncated, too long, too large): with `problem`",
    "model": VideoProblem}}


def error_answer(status: int, detail: str, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The body every error has: `detail` for people (and for clients of the original contract),
    `reason`, a stable code to branch on (the same codes `actionrec predict --json` prints)."""
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)} | (headers or {})
    return JSONResponse({"detail": detail, "reason": reason}, status_code=status, headers=headers)


# An absolute path (at least one folder), not part of a URL or of a relative path like A/B.
_ABSOLUTE_PATH = re.compile(r"(?<![\w/.~:-])/(?:[^\s/'\"`()]+/)+([^\s/'\"`()]+)")


def for_clients(message: str, *known: tuple[Path, str]) -> str:
    """`message` as an API client may read it: each `known` (path, what to call it) given its name,
    any other absolute path shortened to its file name. The server's folders are its operator's."""
    for path, shown in known:
        for form in dict.fromkeys((str(path), str(path.absolute()), str(path.resolve()))):
            message = message.replace(form, shown)
    return _ABSOLUTE_PATH.sub(r"\1", message)


def video_problem_answer(exc: VideoError, subject: str) -> JSONResponse:
    """The answer a VideoError gets (as `error_answer` gives it), plus `problem`: its message
    without the `subject: ` it starts with (the name the service gave the video), as a sentence."""
    detail = str(exc)
    problem = detail.removeprefix(f"{subject}: ").strip()
    problem = problem[:1].upper() + problem[1:]
    return JSONResponse({"detail": detail, "reason": exc.reason, "problem": problem}, status_code=exc.status)
