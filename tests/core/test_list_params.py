"""List endpoints: limit/offset beside page numbers, and 400 on unknown query parameters."""

from __future__ import annotations

import pytest
from django.urls import get_resolver

from console.api_urls import RootView
from rules import services
from rules.models import AddressObject

pytestmark = pytest.mark.django_db

URL = "/api/v1/addresses/"


@pytest.fixture
def addresses() -> list[AddressObject]:
    return [
        services.object_save(AddressObject(name=f"a{i:02}", value=f"198.18.0.{i + 1}"))
        for i in range(7)
    ]


def _names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [a["name"] for a in response.json()["results"]]


def test_page_numbers_still_work(api, addresses):
    body = api.get(URL, {"page": 2, "page_size": 3}).json()
    assert body["count"] == 7 and [a["name"] for a in body["results"]] == ["a03", "a04", "a05"]
    assert "page=3" in body["next"]


def test_limit_and_offset(api, addresses):
    response = api.get(URL, {"limit": 2, "offset": 4})
    assert _names(response) == ["a04", "a05"]
    body = response.json()
    assert body["count"] == 7 and "offset=6" in body["next"] and "limit=2" in body["next"]
    assert _names(api.get(URL, {"offset": 5})) == ["a05", "a06"]


def test_mixing_the_two_styles_or_bad_numbers_is_a_400(api, addresses):
    assert api.get(URL, {"page": 1, "limit": 2}).status_code == 400
    assert "offset" in api.get(URL, {"offset": "x"}).json()


def test_an_unknown_parameter_is_a_400_naming_it(api, addresses):
    response = api.get(URL, {"nmae": "a01", "bogus": 1})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"nmae", "bogus"} and "unknown query parameter" in body["nmae"][0]


def test_known_parameters_pass(api, addresses):
    assert _names(api.get(URL, {"name": "a01"})) == ["a01"]
    assert _names(api.get(URL, {"search": "a0", "ordering": "-name", "format": "json"}))[0] == "a06"


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/v1/rules/", "rulset"),
        ("/api/v1/deployments/", "state"),
        ("/api/v1/audit/", "who"),
        ("/api/v1/revisions/", "x"),
        ("/api/v1/tokens/", "x"),
    ],
)
def test_every_list_checks_its_parameters(api, url, param):
    response = api.get(url, {param: "1"})
    assert response.status_code == 400 and param in response.json()
    assert api.get(url).status_code == 200


def test_detail_views_are_not_checked(api, addresses):
    assert api.get(f"{URL}{addresses[0].pk}/", {"anything": 1}).status_code == 200


def test_the_api_root_lists_the_resources(viewer_api, api_client_for, users):
    body = viewer_api.get("/api/v1/").json()
    assert body["addresses"].endswith("/api/v1/addresses/")
    assert {"rulesets", "rules", "deployments", "audit", "tokens", "devices"} <= set(body)
    admin = api_client_for(users["admin"])
    for url in body.values():
        assert admin.get(url).status_code in (200, 405), url  # 405: POST-only (validate)
    assert api_client_for(None).get("/api/v1/").status_code == 401


def _list_routes(patterns, prefix: str = "") -> set[str]:
    """The names of the collection routes under /api/v1/ (DRF's `<basename>-list`)."""
    names = set()
    for p in patterns:
        if hasattr(p, "url_patterns"):
            names |= _list_routes(p.url_patterns, prefix + str(p.pattern))
        elif (p.name or "").endswith("-list") and (prefix + str(p.pattern)).startswith("api/v1/"):
            names.add(p.name)
    return names


def test_the_api_root_names_every_collection():
    """A new collection is reachable from the root (zones once were not)."""
    missing = _list_routes(get_resolver().url_patterns) - set(RootView.resources.values())
    assert not missing
