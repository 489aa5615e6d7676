"""Idempotency-Key on POSTs that start work: a repeat returns the first answer and starts
nothing; the key shared by processes lives in the database."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from agents import enqueue
from agents.models import Deployment
from core.idempotency.models import IdempotencyKey
from rules.models import AddressObject
from tests.support.deploy import make_device, make_policy

URL = "/api/v1/deployments/"
IMPORT = "/api/v1/policy/import/"
DOC = b"version: 1\naddresses:\n  - name: imported\n    value: 198.18.7.7\n"


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """Device deployments sent to the broker (no worker runs here)."""
    calls: list[int] = []
    monkeypatch.setattr(
        enqueue, "current_app", SimpleNamespace(send_task=lambda name, args: calls.extend(args))
    )
    return calls


@pytest.fixture
def group(db):
    _, group = make_policy()
    make_device("web-1", group=group)
    return group


@pytest.mark.django_db
def test_the_same_key_twice_creates_one_deployment(api, sent, group):
    body = {"device_group": group.pk, "reason": "release 7"}
    first = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 202, first.content
    assert again.status_code == 202 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Deployment.objects.count() == 1
    assert api.get(f"{URL}{first.json()['id']}/")["ETag"]  # read-only objects have ETags too
    other = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert other.status_code == 202 and Deployment.objects.count() == 2


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_a_422(api, sent, group):
    assert (
        api.post(
            URL, {"device_group": group.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k"
        ).status_code
        == 202
    )
    response = api.post(
        URL, {"device_group": group.pk, "reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 422
    assert "different request" in response.json()["detail"]
    assert Deployment.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_per_user_and_expire_after_a_day(api_client_for, users, sent, group):
    body = {"device_group": group.pk}
    operator, admin = api_client_for(users["operator"]), api_client_for(users["admin"])
    assert operator.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 202
    assert admin.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 202
    assert Deployment.objects.count() == 2
    IdempotencyKey.objects.update(created=timezone.now() - timedelta(hours=25))
    again = operator.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 202 and "Idempotent-Replayed" not in again
    assert Deployment.objects.count() == 3


@pytest.mark.django_db
def test_a_failed_request_releases_its_key(api, sent, group):
    bad = api.post(URL, {"device_group": 999999}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert bad.status_code in (400, 404)
    assert not IdempotencyKey.objects.exists()
    good = api.post(URL, {"device_group": group.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert good.status_code == 202


@pytest.mark.django_db
def test_without_a_key_every_post_starts_work(api, sent, group):
    for _ in range(2):
        assert api.post(URL, {"device_group": group.pk}, format="json").status_code == 202
    assert Deployment.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_identical_posts_at_once_create_one_deployment(
    role_groups, api_client_for, users, sent, group
):
    barrier = threading.Barrier(2)
    results: list = []
    body = {"device_group": group.pk}
    clients = [api_client_for(users["operator"]) for _ in range(2)]

    def post(client) -> None:
        try:
            barrier.wait()
            results.append(client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="same"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [r.status_code for r in results] == [202, 202], [r.content for r in results]
    assert results[0].json() == results[1].json()
    assert sum("Idempotent-Replayed" in r for r in results) == 1
    assert Deployment.objects.count() == 1


@pytest.mark.django_db
def test_policy_import_is_idempotent(api):
    headers = {"HTTP_IDEMPOTENCY_KEY": "import-1", "content_type": "application/yaml"}
    first = api.post(IMPORT, DOC, **headers)
    assert first.status_code == 200, first.content
    AddressObject.objects.filter(name="imported").delete()
    again = api.post(IMPORT, DOC, **headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert not AddressObject.objects.filter(name="imported").exists()  # nothing re-imported
    other = api.post(IMPORT, DOC.replace(b"7.7", b"7.8"), **headers)
    assert other.status_code == 422


def test_schema_documents_the_header_and_its_answers():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path in (URL, IMPORT):
        operation = schema["paths"][path]["post"]
        assert "Idempotency-Key" in {p["name"] for p in operation["parameters"]}
        assert {"409", "422"} <= set(operation["responses"])
