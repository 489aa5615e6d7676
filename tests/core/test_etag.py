"""ETag / If-Match on every object: a stale write is a 412, never a silent overwrite."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from drf_spectacular.generators import SchemaGenerator

from core.audit.models import AuditEntry
from rules import services
from rules.models import AddressObject, RuleSet, RuleSetRevision

pytestmark = pytest.mark.django_db


@pytest.fixture
def address() -> AddressObject:
    return services.object_save(AddressObject(name="web", value="198.18.0.10"))


@pytest.fixture
def ruleset() -> RuleSet:
    return services.object_save(RuleSet(name="edge"))


def _url(obj) -> str:
    kind = "addresses" if isinstance(obj, AddressObject) else "rulesets"
    return f"/api/v1/{kind}/{obj.pk}/"


@pytest.mark.parametrize("fixture", ["address", "ruleset"])
def test_get_answers_an_etag_that_changes_with_the_object(api, request, fixture):
    url = _url(request.getfixturevalue(fixture))
    first = api.get(url)
    assert first.status_code == 200 and first["ETag"].startswith('"')
    assert api.get(url)["ETag"] == first["ETag"]
    changed = api.patch(url, {"description": "changed"}, format="json")
    assert changed.status_code == 200
    assert changed["ETag"] != first["ETag"]
    assert api.get(url)["ETag"] == changed["ETag"]  # the write's answer is the new version


@pytest.mark.parametrize("fixture", ["address", "ruleset"])
def test_a_matching_if_match_writes(api, request, fixture):
    url = _url(request.getfixturevalue(fixture))
    tag = api.get(url)["ETag"]
    response = api.patch(url, {"description": "ok"}, format="json", HTTP_IF_MATCH=tag)
    assert response.status_code == 200, response.content
    assert response.json()["description"] == "ok"


@pytest.mark.parametrize("fixture", ["address", "ruleset"])
def test_a_bogus_if_match_is_a_412_and_changes_nothing(api, request, fixture):
    obj = request.getfixturevalue(fixture)
    url = _url(obj)
    for method in ("patch", "put"):
        response = getattr(api, method)(
            url,
            {"name": obj.name, "value": "198.18.0.11", "description": "x"},
            format="json",
            HTTP_IF_MATCH='"bogus"',
        )
        assert response.status_code == 412, response.content
        assert "If-Match" in response.json()["detail"]
    assert api.delete(url, HTTP_IF_MATCH='"bogus"').status_code == 412
    obj.refresh_from_db()
    assert obj.description == ""


def test_without_if_match_the_write_proceeds(api, address):
    assert api.patch(_url(address), {"description": "x"}, format="json").status_code == 200
    assert api.delete(_url(address)).status_code == 204


def test_star_and_lists_of_tags_are_understood(api, address):
    url = _url(address)
    tag = api.get(url)["ETag"]
    assert api.patch(url, {"description": "a"}, format="json", HTTP_IF_MATCH="*").status_code == 200
    tag = api.get(url)["ETag"]
    listed = f'"other", {tag}'
    assert (
        api.patch(url, {"description": "b"}, format="json", HTTP_IF_MATCH=listed).status_code == 200
    )
    assert api.delete(url, HTTP_IF_MATCH=api.get(url)["ETag"]).status_code == 204


def test_if_none_match_answers_304(api, ruleset):
    url = _url(ruleset)
    tag = api.get(url)["ETag"]
    response = api.get(url, HTTP_IF_NONE_MATCH=tag)
    assert response.status_code == 304 and response["ETag"] == tag


@pytest.mark.parametrize("fixture", ["address", "ruleset"])
def test_two_clients_editing_at_once_the_second_gets_412(api_client_for, users, request, fixture):
    obj = request.getfixturevalue(fixture)
    url = _url(obj)
    alice, bob = api_client_for(users["operator"]), api_client_for(users["admin"])
    alice_tag, bob_tag = alice.get(url)["ETag"], bob.get(url)["ETag"]
    assert alice_tag == bob_tag
    first = alice.patch(url, {"description": "alice"}, format="json", HTTP_IF_MATCH=alice_tag)
    second = bob.patch(url, {"description": "bob"}, format="json", HTTP_IF_MATCH=bob_tag)
    assert first.status_code == 200 and second.status_code == 412
    obj.refresh_from_db()
    assert obj.description == "alice"
    assert (
        bob.patch(
            url, {"description": "bob"}, format="json", HTTP_IF_MATCH=bob.get(url)["ETag"]
        ).status_code
        == 200
    )


def test_read_only_objects_have_etags_too(api):
    """Audit entries, revisions and deployments cannot be edited, but a poller can still ask
    "changed since?" with If-None-Match."""
    created = api.post("/api/v1/rulesets/", {"name": "polled"}, format="json")
    assert created.status_code == 201, created.content
    urls = [
        f"/api/v1/audit/{AuditEntry.objects.order_by('-seq').first().pk}/",
        f"/api/v1/revisions/{RuleSetRevision.objects.get(ruleset_id=created.json()['id']).pk}/",
    ]
    for url in urls:
        tag = api.get(url)["ETag"]
        assert api.get(url, HTTP_IF_NONE_MATCH=tag).status_code == 304, url


def test_schema_documents_if_match_and_412(api):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    patch = schema["paths"]["/api/v1/rulesets/{id}/"]["patch"]
    assert "If-Match" in {p["name"] for p in patch["parameters"]}
    assert "412" in patch["responses"]
    assert "ETag" in schema["paths"]["/api/v1/rulesets/{id}/"]["get"]["description"]


@pytest.mark.django_db(transaction=True)
def test_two_writes_at_once_with_one_etag_one_wins(role_groups, api_client_for, users):
    """The If-Match check and the write hold the row lock together: never two 200s."""
    obj = services.object_save(AddressObject(name="raced", value="198.18.0.20"))
    url = _url(obj)
    clients = [api_client_for(users["operator"]), api_client_for(users["admin"])]
    tag = clients[0].get(url)["ETag"]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def patch(client, text: str) -> None:
        try:
            barrier.wait()
            response = client.patch(url, {"description": text}, format="json", HTTP_IF_MATCH=tag)
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=patch, args=(c, f"by-{i}")) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(statuses) == [200, 412]
