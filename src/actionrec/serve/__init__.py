"""The REST API and the web page (FastAPI): upload a video, get the action it shows.

    settings.py  ServerSettings: every setting, its default, validation and ACTIONREC_* variable
    workers.py   decode worker processes that may crash or hang on a hostile file
    service.py   PredictionService: the model, the workers, the bound on requests in progress
    uploads.py   taking an upload off the wire: type, size limit, budget, raw body or multipart
    deps.py      the routes' dependencies: the service, the teaching state, the API key check
    routes.py    the routes, as an APIRouter that gets the service as a dependency
    live.py      WebSocket /v1/live
    teaching.py  the teach routes; teaching_data.py: example clips, jobs and models in --data-dir;
                 teach_jobs.py: a job's snapshot of the clips, and the process that teaches on it
    schemas.py   the answers' pydantic models, the error body, OpenAPI details
    guards.py    Host and Origin checks, the answer of a request cut short at shutdown
    protocol.py  uvicorn's HTTP/1.1 protocol with header timeouts, a connection cap, framing checks
    logs.py      log lines made safe (control characters, keys) and bounded (repeats)
    metrics.py   Prometheus metrics and the per-request log line
    app.py       create_app (wiring, error answers) and serve (uvicorn)
    apidoc.py    the HTTP API reference page, written from the OpenAPI schema
    durable.py   files in --data-dir written so that a kill at any moment loses nothing
    web/         the page: static HTML, CSS and ES modules, fully offline
"""
