"""What the server counts: Prometheus metrics, and one log line per request.

One registry per app (so tests can build several apps); requests are recorded by route template
(unknown paths as "unmatched") so metrics keep a bounded number of series. Bodies and query
strings are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from actionrec.serve.logs import printable

log = logging.getLogger("actionrec.server")

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})  # others count as "other"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """Request counts by route and status, latency histograms, predictions in progress, decode
    failures by reason, in Prometheus' text format."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # one per app, so tests can build several apps
        self.requests = Counter("actionrec_http_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("actionrec_http_request_duration_seconds", "Time to answer a request.",
                                 ["route"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.stages = Histogram("actionrec_prediction_stage_duration_seconds",
                                "Time spent decoding and classifying an upload.",
                                ["stage"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.failures = Counter("actionrec_decode_failures", "Uploads that could not be decoded, by reason.",
                                ["reason"], registry=self.registry)
        self.refused_uploads = Counter("actionrec_uploads_refused", "Uploads refused before decoding, by reason.",
                                       ["reason"], registry=self.registry)
        self.in_progress = Gauge("actionrec_predictions_in_progress", "Prediction requests being handled.",
                                 registry=self.registry)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def stage(self, stage: str, seconds: float) -> None:
        self.stages.labels(stage).observe(seconds)

    def decode_failure(self, reason: str) -> None:
        self.failures.labels(reason).inc()

    def upload_refused(self, reason: str) -> None:
        self.refused_uploads.labels(reason).inc()

    def set_in_progress(self, count: int) -> None:
        self.in_progress.set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestLogMiddleware:
    """One log line and one metrics sample per request: method, path, status, milliseconds.

    Never logs bodies or query strings. Routes are recorded by their template (unknown paths as
    "unmatched") so that metrics keep a bounded number of series.
    """

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.request(method, route, status, seconds)
            log.info("%s %s %d %.1f ms", printable(scope["method"][:32]), printable(scope["path"][:2000]), status,
                     seconds * 1000)
