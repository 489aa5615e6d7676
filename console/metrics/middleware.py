"""Request latency by route, the one metric counted in the process that serves.

Labelled by the resolved URL name (`device-detail`), never the raw path: a path
holds ids, so its values would grow without bound. Per gunicorn worker unless
PROMETHEUS_MULTIPROC_DIR is set (docs/metrics.md), which prometheus-client reads when
this module is imported.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics

disable_created_metrics()  # no `_created` series beside every histogram: noise for dashboards
#: This process's own metrics (the fleet's are read from the database at each scrape).
PROCESS_REGISTRY = CollectorRegistry()
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNRESOLVED = "unresolved"  # no route matched (a 404 before any view)

REQUEST_SECONDS = Histogram(
    "rampart_http_request_duration_seconds",
    "Time to answer an HTTP request, by route (URL name), method and status class.",
    ["route", "method", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=PROCESS_REGISTRY,
)


class RequestLatencyMiddleware:
    """Times every request (first in MIDDLEWARE, so the other middleware counts too)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        REQUEST_SECONDS.labels(
            route=match.view_name if match is not None else UNRESOLVED,
            method=request.method if request.method in METHODS else "other",
            status=f"{response.status_code // 100}xx",
        ).observe(time.perf_counter() - started)
        return response
