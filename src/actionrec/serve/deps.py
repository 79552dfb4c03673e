"""The routes' dependencies (FastAPI `Depends`), in one place: the prediction service, the teaching
state, and the API key check.

    Service       the app's PredictionService, as a route parameter's type
    TeachingDep   the app's Teaching (example clips, jobs and models in --data-dir)
    guarded       `dependencies=guarded`: the route needs the API key when one is configured
    key_problem   what is wrong with a key a request gave; also used by the WebSocket route,
                  which reads its key itself (a browser can only send it in the query)

With an API key configured, a request gives it as `X-API-Key: KEY` or `Authorization: Bearer KEY`;
the two are compared with the configured key in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from actionrec.errors import RequestError
from actionrec.serve.service import PredictionService
from actionrec.serve.teaching_data import Teaching


def get_service(request: Request) -> PredictionService:
    return request.app.state.service


Service = Annotated[PredictionService, Depends(get_service)]


def get_teaching(request: Request) -> Teaching:
    return request.app.state.teaching


TeachingDep = Annotated[Teaching, Depends(get_teaching)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The server's API key.")
_bearer = HTTPBearer(auto_error=False, description="The server's API key as a bearer token.")


def key_problem(given: str | None, expected: bytes | None) -> str | None:
    """What is wrong with the key a request gave (None when nothing is), compared in constant time."""
    if expected is None:
        return None
    if given is None:
        return "This server needs an API key: send it in the X-API-Key header or as 'Authorization: Bearer KEY'."
    if not hmac.compare_digest(given.encode(), expected):
        return "The API key is wrong. Check it and try again."
    return None


async def require_api_key(
    service: Service,
    header_key: Annotated[str | None, Depends(_api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    given = header_key or (credentials.credentials if credentials else None)
    problem = key_problem(given, service.settings.api_key_bytes)
    if problem is not None:
        raise RequestError(401, problem, "api_key_missing" if given is None else "api_key_wrong",
                           {"WWW-Authenticate": "Bearer"})


guarded = [Depends(require_api_key)]
