"""GET /metrics: Prometheus's scrape, for a scraper's bearer token or a user with a role.

A scraper sends `Authorization: Bearer <RAMPART_METRICS_TOKEN>` (the setting; unset: no
bearer token is accepted); otherwise the API's own authentication decides (an API token,
`Authorization: Token ...`, or a session), for any user holding a role. Anything else
gets 401 (403: signed in without a role).
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.settings import api_settings

from core.accounts import roles

from .collector import FleetCollector
from .middleware import PROCESS_REGISTRY


def _bearer_ok(credential: str) -> bool:
    token = getattr(settings, "RAMPART_METRICS_TOKEN", "")
    return bool(token) and hmac.compare_digest(credential.encode(), token.encode())


def _api_user(request: HttpRequest):
    """The user the API's own authentication classes find (API token or session), so
    /metrics accepts exactly the credentials the API does; None for bad credentials."""
    authenticators = [auth() for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES]
    try:
        return Request(request, authenticators=authenticators).user
    except APIException:
        return None


def authorize(request: HttpRequest) -> int:
    """200 when the request may read the metrics, else the status to answer."""
    scheme, _, credential = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "bearer":
        return 200 if _bearer_ok(credential.strip()) else 401
    user = _api_user(request)
    if user is None or not user.is_authenticated:
        return 401
    return 200 if roles.has_any(user, roles.CAN_READ) else 403


def registry() -> CollectorRegistry:
    """This scrape's registry: the fleet from the database, and the request latencies of
    this process (or of every process, from PROMETHEUS_MULTIPROC_DIR)."""
    scrape = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(scrape)
    else:
        scrape.register(PROCESS_REGISTRY)
    scrape.register(FleetCollector())
    return scrape


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    status = authorize(request)
    if status != 200:
        response = HttpResponse(
            "metrics need a role or the metrics bearer token\n",
            status=status,
            content_type="text/plain; charset=utf-8",
        )
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="rampart-metrics"'
        return response
    encoder, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
    return HttpResponse(encoder(registry()), content_type=content_type)
