"""The HTTP routes. Each receives the prediction service as a dependency (see `deps`); failures are raised as
this package's errors and turned into answers by the app's exception handlers.

    GET  /                  the web page (static files from actionrec/serve/web)
    POST /, POST /predict   raw video bytes in, {"action", "confidence", "message"} out
    POST /v1/predictions    raw bytes or a multipart `file`; top-k, segments, video facts, timings
    GET  /v1/model          the loaded model's labels, dataset and input spec; the video file
                            extensions the server takes by name (`video_extensions`)
    GET  /healthz           the process is alive
    GET  /readyz            the model is loaded and a decode worker is running
    GET  /metrics           Prometheus text exposition

With an API key configured, the prediction routes and /metrics need it (`X-API-Key: KEY` or
`Authorization: Bearer KEY`). The page, /healthz, /readyz and /v1/model stay open so that the
page can describe the model and orchestrators can probe the service. /metrics is guarded because
it reveals traffic volumes; Prometheus can send the key as a bearer token.

Beside the words of `detail` and `warnings`, /v1/predictions gives the web page (and any client)
fields to branch on: `reason` on errors, `problem` on those about the video itself (its words
without naming it), and `warning_details` (each warning with a code).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from actionrec.errors import RegionsError, RequestError, VideoError
from actionrec.runtime.answer import Prediction
from actionrec.runtime.detectors import load_detector
from actionrec.runtime.recognizer import Recognizer
from actionrec.runtime.resources import cpu_facts
from actionrec.serve.deps import Service, guarded
from actionrec.serve.schemas import (
    ERROR_RESPONSES,
    V1_ERROR_RESPONSES,
    Answer,
    DetailedAnswer,
    ModelRef,
    raw_body_openapi,
    video_problem_answer,
)
from actionrec.serve.service import UPLOAD_NAME, PredictionService
from actionrec.video.probe import VIDEO_EXTENSIONS, is_video_name
from actionrec.video.regions import RegionSpec, parse_regions

WEB_DIR = Path(__file__).parent / "web"

PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


router = APIRouter()


async def _predict(request: Request, service: PredictionService, *, top_k: int, segments: bool,
                   allow_multipart: bool = False, regions: RegionSpec | None = None, explain: bool = False
                   ) -> tuple[Prediction, Recognizer, float]:
    """One upload through decode and inference; returns the prediction, the recognizer that made it
    and the total milliseconds."""
    started = time.perf_counter()
    async with service.received_upload(request, service.settings.max_upload_bytes, allow_multipart) as video:
        async with service.slot():  # taken once the body is in
            prediction, recognizer = await service.predict(video, top_k=top_k, segments=segments, regions=regions,
                                                           explain=explain)
    return prediction, recognizer, (time.perf_counter() - started) * 1000


# --------------------------------------------------------------------------- predictions

_answer_doc: dict[str, Any] = dict(response_model=Answer, dependencies=guarded, responses=ERROR_RESPONSES,
                   openapi_extra=raw_body_openapi(), tags=["predictions"])


@router.post("/", summary="Which action a video shows (raw bytes in)", **_answer_doc)
async def predict_root(request: Request, service: Service) -> Answer:
    prediction, _, _ = await _predict(request, service, top_k=1, segments=False)
    return Answer.from_prediction(prediction)


@router.post("/predict", summary="Same as POST /", **_answer_doc)
async def predict_alias(request: Request, service: Service) -> Answer:
    return await predict_root(request, service)


@router.post("/v1/predictions", summary="Action, top-k, timeline, video facts and timings",
             response_model=DetailedAnswer, dependencies=guarded, responses=V1_ERROR_RESPONSES,
             openapi_extra=raw_body_openapi(multipart=True), tags=["predictions"])
async def predict_v1(
    request: Request,
    service: Service,
    top_k: int = Query(5, ge=1, le=1000, description="How many of the best actions to list."),
    segments: bool = Query(False, description="Also classify sliding windows: a timeline of actions."),
    regions: str | None = Query(None, max_length=1000, description="Also answer for each region: `grid:CxR`, "
                                "boxes `x,y,w,h;...` (pixels, or fractions of the frame) or `people`; at most "
                                "`--max-regions`. With `segments`, grids and zones get a timeline each."),
    explain: bool = Query(False, description="Also say why: `explanation`, the weight of each sampled moment and "
                                             "a map of where in the picture the evidence lies (not with `regions`)."),
) -> DetailedAnswer | JSONResponse:
    spec = None if regions is None else checked_regions(regions, segments, service.settings.max_regions)
    if spec is not None and explain:
        raise RegionsError("explain explains the whole video's answer, not regions: ask for one or the other.")
    try:
        prediction, recognizer, total_ms = await _predict(request, service, top_k=top_k, segments=segments,
                                                          allow_multipart=True, regions=spec, explain=explain)
    except VideoError as exc:  # the answer it gets on every route, plus `problem`
        return video_problem_answer(exc, UPLOAD_NAME)
    return DetailedAnswer.from_prediction(prediction, ModelRef(name=recognizer.name, version=recognizer.version),
                                          len(recognizer.labels), total_ms)


def checked_regions(text: str, segments: bool, max_regions: int) -> RegionSpec:
    """The `regions` of a request, refused (RegionsError, 422) before its body is read where the server
    cannot answer it: a SPEC that does not parse, too many regions, a detector file, or `people`
    without OpenCV."""
    if max_regions == 0:
        raise RegionsError("This server answers no regions (--max-regions 0).")
    spec = parse_regions(text)
    if segments and not spec.fixed:
        raise RegionsError("segments with regions make a timeline per cell or zone; people are answered without one.")
    if spec.source == "detector":
        raise RegionsError("A server does not take detector files from requests: ask for grid:CxR, boxes or people.")
    count = spec.columns * spec.rows if spec.source == "grid" else len(spec.boxes)
    if count > max_regions:
        raise RegionsError(f"{count} regions asked for; this server answers at most {max_regions} (--max-regions).")
    if spec.source == "people":
        load_detector(spec)  # DetectorUnavailableError where OpenCV is missing
    return spec


# --------------------------------------------------------------------------- facts about the service


@router.get("/v1/model", tags=["service"], summary="The loaded model: labels, dataset, input spec")
async def model_facts(service: Service) -> dict:
    return service.recognizer.describe() | {"api_key_required": service.settings.api_key is not None,
                                            "cpu": cpu_facts(), "video_extensions": list(VIDEO_EXTENSIONS)}


@router.get("/healthz", tags=["service"], summary="The process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", tags=["service"], summary="Model loaded and decode workers running",
            responses={503: {"description": "No decode worker is running"}})
async def readyz(service: Service) -> JSONResponse:
    pool = service.pool
    workers = {"running": pool.running, "configured": pool.size}
    if pool.running == 0:
        return JSONResponse({"status": "not ready", "detail": "No decode worker is running; replacements "
                             "are starting.", "workers": workers}, status_code=503)
    recognizer = service.recognizer
    return JSONResponse({"status": "ready", "model": {"name": recognizer.name, "version": recognizer.version},
                         "workers": workers, "pending": service.pending})


@router.get("/metrics", tags=["service"], summary="Prometheus metrics", dependencies=guarded)
async def metrics_text(service: Service) -> Response:
    return Response(service.metrics.render(), media_type=service.metrics.content_type)


# --------------------------------------------------------------------------- examples to try


def _examples(service: PredictionService) -> dict[str, Path]:
    folder = service.settings.examples_dir
    if folder is None or not folder.is_dir():
        return {}
    return {path.name: path for path in sorted(folder.iterdir())
            if is_video_name(path.name) and path.is_file()}


@router.get("/v1/examples", tags=["service"], summary="Example videos the page offers to try")
async def examples(service: Service) -> list[dict]:
    return [{"name": name, "label": path.stem.rsplit("_", 1)[0], "url": f"examples/{name}",
             "size_bytes": path.stat().st_size} for name, path in _examples(service).items()]


@router.get("/examples/{name}", include_in_schema=False)
async def example(name: str, service: Service) -> FileResponse:
    path = _examples(service).get(name)  # only names in the folder's listing: no way out of it
    if path is None:
        raise RequestError(404, f"No example named {name!r}.", "not_found")
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "max-age=3600"})


# --------------------------------------------------------------------------- the web page


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)
