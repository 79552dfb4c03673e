"""The HTTP API's reference page (docs/http-api.md), written from the OpenAPI schema the app publishes
at /openapi.json and from the reason codes its errors carry:

    python -m actionrec.serve.apidoc > docs/http-api.md

A test checks that the page in the repository is what this writes, so it cannot fall behind.
"""

from __future__ import annotations

import sys
from typing import Any

# Every `reason` an answer can carry: (code, HTTP status or "live", what it means, what to do).
REASONS: list[tuple[str, str, str]] = [
    ("empty", "400", "The body is empty (0 bytes): send the video file's bytes."),
    ("upload_interrupted", "400", "The client stopped sending before the body was complete."),
    ("bad_multipart", "400", "A multipart body that cannot be read, has no `file` field, or has more than 4 text "
                             "fields or one over 8 KB."),
    ("bad_framing", "400", "Both Content-Length and Transfer-Encoding, a bare-LF line end or a folded header: the "
                           "connection is closed."),
    ("host_not_allowed", "400", "The Host header does not name this server (`--allowed-hosts`)."),
    ("api_key_missing", "401", "The server has a key and none was sent (`X-API-Key` or `Authorization: Bearer`)."),
    ("api_key_wrong", "401", "The key sent is not the server's."),
    ("origin_not_allowed", "403", "A browser page on another origin (not the server's own, nor `--cors-origins`)."),
    ("not_found", "404", "No such route, example, clip, job or model."),
    ("method_not_allowed", "405", "The route exists, with other methods."),
    ("upload_timeout", "408", "The body stalled, or its last `--upload-idle-timeout-s` brought less than "
                              "`--upload-min-kbps`."),
    ("teaching_off", "409", "The server was started without `--data-dir`."),
    ("teach_base_unusable", "409", "The teaching base (`--teach-base`) cannot be read any more: replaced or "
                                   "deleted since the server started."),
    ("teaching_busy", "409", "A teaching job is running: follow it, then start again."),
    ("too_many_actions", "409", "The server holds `--teach-max-actions` actions already."),
    ("too_many_clips", "409", "The action has `--teach-max-clips` clips already."),
    ("upload_too_large", "413", "The body is over `--max-upload-mb` (or `--teach-max-clip-mb` for a clip)."),
    ("not_a_video_type", "415", "A Content-Type that is not `video/*`, `application/octet-stream` or multipart."),
    ("invalid_parameters", "422", "A query or JSON parameter out of range or of the wrong type."),
    ("not_a_video", "422", "Not a video file FFmpeg can read, or a still image."),
    ("no_video_stream", "422", "A file with no video stream (audio only)."),
    ("undecodable", "422", "A video FFmpeg cannot decode (an unknown codec, a damaged stream)."),
    ("invalid_video", "422", "A video whose timing or frames cannot be used."),
    ("too_long", "422", "Longer than `--max-duration-s` (by more than half a frame)."),
    ("frame_too_large", "422", "Frames, or an image's header, over 4096 x 2304 pixels."),
    ("decoder_crashed", "422", "The decoder crashed on the file: its worker was replaced."),
    ("decoder_error", "422", "Decoding raised an error nobody listed: it is in the server's log."),
    ("decode_timeout", "422", "Decoding took over `--decode-timeout-s`: its worker was replaced."),
    ("invalid_action_name", "422", "An action name that is empty, too long or has characters a name cannot have."),
    ("invalid_model_name", "422", "A taught model's name that a name cannot be."),
    ("too_few_actions", "422", "Teaching needs clips of at least two actions."),
    ("model_unusable", "422", "The model file chosen to serve cannot be loaded: damaged, not an exported "
                              "model, its card unlike its graph, or it reads another file."),
    ("bad_regions", "422", "A `regions` that does not parse, a box outside the frame or of no size, more regions "
                           "than `--max-regions`, or a detector file (a server takes grid, boxes and people)."),
    ("people_unavailable", "422", "`regions=people` on a server without OpenCV (the `people` extra)."),
    ("internal_error", "500", "The model failed on frames that decoded fine: a server fault, in its log."),
    ("busy", "503", "Every place for work is taken (`--max-pending`, `--max-uploads`): retry after `Retry-After`."),
    ("worker_lost", "503", "A decode worker was killed or suspended from outside: not the file's fault; retry."),
    ("uploads_over_budget", "503", "Uploads in progress hold `--upload-budget-mb`: retry after `Retry-After`."),
    ("storage_error", "503", "Writing the upload failed for a reason other than space: retry later."),
    ("shutting_down", "503", "The server stopped before this request finished: retry."),
    ("too_many_connections", "503", "The server has `--max-connections` open: retry after `Retry-After`."),
    ("storage_full", "507", "No room for the upload on the server's disk, or it is larger than the whole budget."),
    ("idle", "live", "No frame for `--live-idle-timeout-s` (close code 4408)."),
    ("api_key", "live", "The live route's key is missing or wrong (close code 1008)."),
    ("not_an_image", "live", "A frame that is not a JPEG or PNG image (close code 1003)."),
    ("teach_failed", "job", "A teaching job's process stopped unexpectedly, or the server stopped during it."),
    ("cannot_teach", "job", "The examples cannot teach a model (each job says why)."),
]


def openapi_schema() -> dict[str, Any]:
    """The schema the app publishes, from its routers alone (no model needed)."""
    from fastapi import FastAPI

    from actionrec.serve import live, routes, teaching

    app = FastAPI(title="Action recognition", version="1")
    for router in (routes.router, teaching.router, live.router):
        app.include_router(router)
    return app.openapi()


def markdown() -> str:
    schema = openapi_schema()
    lines = ["# HTTP API reference", "",
             "Written by `python -m actionrec.serve.apidoc` from the OpenAPI schema the server publishes at "
             "`/openapi.json` (and renders at `/docs`, offline). [Serving](serve.md) explains the routes "
             "with examples.", "", "## Routes", "", "| method | path | what it does | answers |",
             "| --- | --- | --- | --- |"]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            statuses = ", ".join(sorted(operation.get("responses", {})))
            lines.append(f"| {method.upper()} | `{path}` | {operation.get('summary', '')} | {statuses} |")
    lines += ["| WebSocket | `/v1/live` | Live recognition: camera frames in, answers out | close codes |", "",
              "## Fields to branch on", "",
              "Words (`detail`, `warnings`) are for people and may change; these fields are stable:", "",
              "- `reason` on every error (below).",
              "- `problem` on a 422 of `POST /v1/predictions` about the video itself: what is wrong with it, as a "
              "sentence that does not name it (`detail` starts \"the uploaded video: \").",
              "- `warning_details` in an answer of `POST /v1/predictions`: `warnings` in the same order as "
              "`{\"code\", \"text\"}`, `code` `unsure` (the answer is `uncertain`: the video may show none of "
              "the model's actions) or `decoding` (reading the video met a problem, such as a stream that broke "
              "part way).",
              "- `explanation` in an answer of `POST /v1/predictions?explain=true` (else null): `moments` (one per "
              "sampled moment in time order, `time_s` and `weight`: larger is more evidence for the answer, "
              "negative is evidence against), `map` (`rows`, `cols`, `weights[row][col]` over the whole frame "
              "as shown) and `warnings` codes: `no_map` (the model file has no frame maps: `map` is null), "
              "`few_moments`, `one_moment` ([Explanations](explain.md)).",
              "- `video_extensions` in `GET /v1/model`: the file extensions the server takes for a video by its "
              "name (where it searches folders; the web page checks a file that has no type by it). Uploads are "
              "judged by their content whatever their name.", "",
              "## Errors", "",
              'Every error is `{"detail": "...", "reason": "..."}`: `detail` for people, `reason` a stable code '
              "to branch on (the same codes `actionrec predict --json` prints). Answers 503 carry `Retry-After`. "
              "The live route ends a stream with `{\"type\": \"error\", \"detail\", \"reason\"}` and a close code "
              "whose reason is the same code; a teaching job that fails says its `reason` in the job.", "",
              "| reason | status | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{code}` | {status} | {meaning} |" for code, status, meaning in REASONS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
