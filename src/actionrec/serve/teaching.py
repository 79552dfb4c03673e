"""Teaching the served model new actions over HTTP, durably: example clips in, a taught model out,
and the served model switched without a restart.

    POST   /v1/teach/examples?action=NAME   a video (raw body or multipart `file`): one example clip
    GET    /v1/teach                        whether teaching is on, what it builds on, its limits, a note
    GET    /v1/teach/examples               the actions and their clips
    DELETE /v1/teach/examples/{action}[/{clip}]   remove a clip, or an action with all its clips
    POST   /v1/teach/jobs                   teach the base the actions as they are now: 202 and a job
    GET    /v1/teach/jobs[/{job}]           a job's progress (reading n of m clips, fitting, done)
    GET    /v1/models                       the models this server holds: its base and those taught
    POST   /v1/models/{model}/serve         serve that model from now on (requests in flight finish
                                            on the one they started with)
    GET    /v1/models/{model}/file          download a model file (predict, watch and serve take it)

Everything lives in the folder the server is given (`--data-dir`, ACTIONREC_DATA_DIR), kept by
`Teaching` (`actionrec.serve.teaching_data`, which describes the folder): a server killed at any
moment keeps every clip and job it acknowledged, and a job cut short is started again when the
server comes back. Teaching runs in a child process: a clip that crashes the decoder costs that
process, and the server goes on answering. Behind the API key when one is set.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from actionrec.errors import RequestError
from actionrec.serve import uploads
from actionrec.serve.deps import TeachingDep, guarded
from actionrec.serve.schemas import ERROR_RESPONSES, raw_body_openapi

router = APIRouter(dependencies=guarded, tags=["teaching"], responses=ERROR_RESPONSES)


@router.post("/v1/teach/examples", status_code=201, summary="Add one example clip of an action",
             openapi_extra=raw_body_openapi(multipart=True))
async def add_example(request: Request, teaching: TeachingDep,
                      action: str = Query(..., description="The action the clip shows (its name).")) -> dict:
    return await teaching.add_example(request, action)


@router.get("/v1/teach/examples", summary="The actions and their example clips")
async def list_examples(teaching: TeachingDep) -> dict:
    examples = teaching.examples()
    return {"actions": [{"action": name, "clips": clips} for name, clips in examples.items()],
            "limits": teaching.limits(), "teaching": await asyncio.to_thread(teaching.about)}


@router.delete("/v1/teach/examples/{action}/{clip_id}", summary="Remove one example clip")
async def remove_example(action: str, clip_id: str, teaching: TeachingDep) -> dict:
    return teaching.remove_example(action, clip_id)


@router.delete("/v1/teach/examples/{action}", summary="Remove an action and all its clips")
async def remove_action(action: str, teaching: TeachingDep) -> dict:
    return teaching.remove_example(action, None)


JOB_OPTIONS_SCHEMA = {"type": "object", "example": {"name": "my-actions", "keep_base": False},
                      "properties": {"name": {"type": "string"}, "keep_base": {"type": "boolean"}}}


@router.post("/v1/teach/jobs", status_code=202, summary="Teach the base the actions as they are now",
             openapi_extra={"requestBody": {"required": False,
                                            "content": {"application/json": {"schema": JOB_OPTIONS_SCHEMA}}}})
async def start_job(request: Request, teaching: TeachingDep) -> dict:
    # Read here, after the key check, small and under the uploads' time rules (a body FastAPI
    # parsed would be read whole, before the key check and without a limit).
    settings = teaching.settings
    options = await uploads.small_json(request, settings.upload_idle_timeout_s, settings.upload_min_kbps * 1024)
    name = options.get("name")
    if name is not None and not isinstance(name, str):
        raise RequestError(422, "name: must be a string.", "invalid_parameters")
    return await teaching.start_job(name, bool(options.get("keep_base", False)))


@router.get("/v1/teach", summary="Whether this server teaches, what it builds on, and its limits")
async def about(teaching: TeachingDep) -> dict:
    return await asyncio.to_thread(teaching.about) | {"limits": teaching.limits()}


@router.get("/v1/teach/jobs", summary="Teaching jobs, latest first")
async def list_jobs(teaching: TeachingDep) -> list[dict]:
    return teaching.jobs()


@router.get("/v1/teach/jobs/{job_id}", summary="A teaching job's progress and outcome")
async def get_job(job_id: str, teaching: TeachingDep) -> dict:
    return teaching.job(job_id)


@router.get("/v1/models", summary="The models this server holds, and which it serves")
async def list_models(teaching: TeachingDep) -> dict:
    return await asyncio.to_thread(teaching.models)


@router.post("/v1/models/{model_id}/serve", summary="Serve this model from now on, without a restart")
async def serve_model(model_id: str, teaching: TeachingDep) -> dict:
    return await teaching.switch(model_id)


@router.get("/v1/models/{model_id}/file", summary="Download a model file", response_class=FileResponse)
async def model_file(model_id: str, teaching: TeachingDep) -> FileResponse:
    path = teaching.model_path(model_id)
    return FileResponse(path, media_type="application/octet-stream", filename=f"{model_id}.onnx")
