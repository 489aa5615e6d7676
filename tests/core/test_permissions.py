"""Every API route, found by walking the URL resolver (so routes added later are covered
without editing this file): it names its permissions, refuses writes from a viewer (403)
and from an anonymous caller (401/403), and shows nothing under /api/v1/ to anonymous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.settings import api_settings
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from core.accounts.permissions import IsAuthenticatedSelf

UNSAFE = ("post", "put", "patch", "delete")
# Permission classes that let any signed-in user act on their own things (their tokens):
# such routes may accept a viewer's write, never an anonymous one.
SELF_SERVICE = (IsAuthenticatedSelf,)
# Unsafe methods that change nothing, so every role may call them. Deny by default: a new
# route lands here only by a reviewed edit that says why.
VIEWER_MAY_CALL = {
    "POST /api/v1/validate/": "validates a posted policy document; writes nothing (CI uses it)",
}


@dataclass(frozen=True)
class Route:
    url: str
    method: str
    view_class: type[APIView]
    initkwargs: dict
    action: str | None

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.url}"


def _sample_url(pattern: str) -> str:
    """A concrete URL for a route pattern: every path parameter becomes 1."""
    url = re.sub(r"\(\?P<\w+>[^)]*\)", "1", pattern)  # regex routes (routers)
    url = re.sub(r"<(?:\w+:)?\w+>", "1", url)  # path() routes
    return "/" + url.replace("^", "").replace("$", "").replace("\\", "")


def _walk(patterns, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def discover_routes() -> list[Route]:
    routes: dict[tuple[str, str], Route] = {}
    for pattern, callback in _walk(get_resolver().url_patterns):
        view_class = getattr(callback, "cls", None)
        if (
            not (isinstance(view_class, type) and issubclass(view_class, APIView))
            or "(?P<format>" in pattern
        ):
            continue
        actions = getattr(callback, "actions", None)
        if actions:
            methods = dict(actions)
        else:
            methods = {
                m: None
                for m in view_class.http_method_names
                if m not in ("options", "head", "trace") and hasattr(view_class, m)
            }
        url = _sample_url(pattern)
        for method, action in methods.items():
            routes.setdefault(
                (url, method),
                Route(url, method, view_class, dict(callback.initkwargs or {}), action),
            )
    return sorted(routes.values(), key=str)


ROUTES = discover_routes()
API_ROUTES = [r for r in ROUTES if r.url.startswith("/api/")]
WRITE_ROUTES = [r for r in API_ROUTES if r.method in UNSAFE]


def effective_permissions(route: Route) -> list[type]:
    """What the view checks for this method, as DRF would compute it (per action too)."""
    view = route.view_class(**route.initkwargs)
    view.action = route.action
    view.action_map = {route.method: route.action} if route.action else {}
    view.request = APIRequestFactory().generic(route.method.upper(), route.url)
    view.args, view.kwargs, view.format_kwarg = (), {}, None
    return [type(p) for p in view.get_permissions()]


def test_the_walk_finds_the_routes_we_know():
    found = {str(r) for r in ROUTES}
    for expected in (
        "POST /api/v1/rules/1/move/",
        "POST /api/v1/rulesets/1/rules/bulk/",
        "DELETE /api/v1/devices/1/",
        "PATCH /api/v1/address-groups/1/",
        "POST /api/v1/tokens/",
        "GET /api/v1/me/",
        "POST /api/v1/users/",
        "POST /api/v1/users/1/roles/",
        "POST /api/v1/users/1/deactivate/",
        "POST /api/v1/users/1/reset-password/",
        "DELETE /api/v1/users/1/tokens/1/",
    ):
        assert expected in found
    assert len(WRITE_ROUTES) > 40


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_every_route_names_its_permissions(route):
    classes = effective_permissions(route)
    assert classes, f"{route} has no permission classes: anyone could call it"
    assert classes != list(api_settings.DEFAULT_PERMISSION_CLASSES), (
        f"{route} relies on the default permissions"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("route", WRITE_ROUTES, ids=str)
def test_writes_are_refused_to_anonymous_callers(route, api_client_for):
    response = getattr(api_client_for(None), route.method)(route.url, {}, format="json")
    assert response.status_code in (401, 403), f"{route} answered {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize("route", WRITE_ROUTES, ids=str)
def test_writes_are_refused_to_viewers(route, viewer_api):
    if set(effective_permissions(route)) <= set(SELF_SERVICE):
        pytest.skip("self-service route: a viewer manages their own tokens")
    if str(route) in VIEWER_MAY_CALL:
        pytest.skip(VIEWER_MAY_CALL[str(route)])
    response = getattr(viewer_api, route.method)(route.url, {}, format="json")
    assert response.status_code == 403, f"{route} answered {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "route", [r for r in API_ROUTES if r.method == "get" and r.url.startswith("/api/v1/")], ids=str
)
def test_nothing_is_readable_anonymously(route, api_client_for):
    response = api_client_for(None).get(route.url)
    assert response.status_code in (401, 403), f"{route} answered {response.status_code}"
