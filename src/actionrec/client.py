"""A small client for the REST API, with nothing beyond the standard library.

    from actionrec.client import Client
    client = Client("http://127.0.0.1:8000", api_key="...")       # or ACTIONREC_API_KEY
    answer = client.predict("video.mp4", top_k=3, segments=True)    # a path, bytes or a binary file
    print(answer["action"], answer["confidence"], answer["segments"])

Videos are sent as the raw request body, streamed from disk. An answer of 503 (the server is
busy) is retried after its Retry-After, up to `retries` times; other errors raise `ClientError`
with the server's `status`, `reason` code and `detail`.
"""

from __future__ import annotations

import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from actionrec.errors import ActionrecError

Video = str | os.PathLike | bytes | bytearray | BinaryIO
MAX_RETRY_WAIT_S = 30.0


class ClientError(ActionrecError):
    """The server refused a request (or could not be reached: `status` 0)."""

    def __init__(self, status: int, detail: str, reason: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}" if status else detail)
        self.status, self.detail, self.reason, self.retry_after = status, detail, reason, retry_after


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", *, api_key: str | None = None, timeout: float = 300.0,
                 retries: int = 3) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("ACTIONREC_API_KEY") or None
        self.timeout, self.retries = timeout, retries

    def predict(self, video: Video, *, top_k: int = 5, segments: bool = False,
                regions: str | None = None) -> dict[str, Any]:
        """The v1 answer: action, confidence, top_k, uncertain, segments, video facts, timings; with
        `regions` (grid:CxR, boxes x,y,w,h;... or people), each region's answer in `regions`."""
        params: dict[str, Any] = {"top_k": top_k, "segments": str(segments).lower()}
        if regions is not None:
            params["regions"] = regions
        query = urllib.parse.urlencode(params)
        return self._post(f"/v1/predictions?{query}", video)

    def action(self, video: Video) -> dict[str, Any]:
        """The original contract: {"action", "confidence", "message"}."""
        return self._post("/", video)

    def model(self) -> dict[str, Any]:
        """The served model's labels, input settings, dataset and timeline."""
        return self._request("GET", "/v1/model")

    def ready(self) -> bool:
        try:
            return self._request("GET", "/readyz", retry=False).get("status") == "ready"
        except ClientError:
            return False

    # -- the wire -----------------------------------------------------------------------------

    def _post(self, path: str, video: Video) -> dict[str, Any]:
        if isinstance(video, (str, os.PathLike)):
            file = Path(video)
            if not file.is_file():
                raise ClientError(0, f"{file}: no such file.", "not_found")
            return self._request("POST", path, body=file)
        if isinstance(video, (bytes, bytearray)):
            return self._request("POST", path, body=bytes(video))
        return self._request("POST", path, body=video.read())

    def _request(self, method: str, path: str, body: Path | bytes | None = None, retry: bool = True) -> dict[str, Any]:
        for attempt in range(self.retries + 1 if retry else 1):
            headers = {"Accept": "application/json"}
            if self.api_key:
                headers["X-API-Key"] = self.api_key
            data: Any = None
            if body is not None:
                headers["Content-Type"] = "video/mp4"
                headers["Content-Length"] = str(body.stat().st_size if isinstance(body, Path) else len(body))
                data = open(body, "rb") if isinstance(body, Path) else io.BytesIO(body)
            request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as exc:
                error = _client_error(exc)
                if error.status != 503 or attempt == (self.retries if retry else 0):
                    raise error from None
                time.sleep(min(error.retry_after or 1.0, MAX_RETRY_WAIT_S))
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise ClientError(0, f"cannot reach {self.url} ({reason}).", "unreachable") from None
            finally:
                if hasattr(data, "close"):
                    data.close()
        raise AssertionError("unreachable")


def _client_error(exc: urllib.error.HTTPError) -> ClientError:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    retry_after = exc.headers.get("Retry-After")
    return ClientError(exc.code, str(body.get("detail") or exc.reason), body.get("reason"),
                       float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None)
