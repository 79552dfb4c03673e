"""The REST API and the web page (FastAPI): upload a video, get the action it shows.

    settings.py  ServerSettings: every setting, its default, validation and ACTIONREC_* variable
    workers.py   decode worker processes that may crash or hang on a hostile file
    service.py   PredictionService: the model, the workers, the bound on requests in progress
    uploads.py   taking an upload off the wire: type, size limit, raw body or multipart
    routes.py    the routes, as an APIRouter that gets the service as a dependency
    schemas.py   the answers' pydantic models and OpenAPI details
    metrics.py   Prometheus metrics and the per-request log line
    app.py       create_app (wiring, error answers) and serve (uvicorn)
    web/         the page: static HTML, CSS and JavaScript, fully offline
"""
