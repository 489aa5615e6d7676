"""The deployments API: 202 + enqueue after commit, permissions, validation, the detail view."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from agents import enqueue, services
from tests.support.deploy import make_device, make_policy

pytestmark = pytest.mark.django_db


URL = "/api/v1/deployments/"


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """The device deployment ids sent to the broker as `deploy_device` or `deploy_batch`
    tasks."""
    calls: list[int] = []

    def send_task(name: str, args: tuple) -> None:
        assert name in (enqueue.DEPLOY_DEVICE, enqueue.DEPLOY_BATCH)
        calls.extend(args[0] if name == enqueue.DEPLOY_BATCH else args)

    monkeypatch.setattr(enqueue, "current_app", SimpleNamespace(send_task=send_task))
    return calls


def test_create_returns_202_and_enqueues_only_after_commit(
    api, sent, django_capture_on_commit_callbacks
):
    ruleset, group = make_policy()
    devices = [make_device(f"web-{i}", group=group) for i in range(3)]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        resp = api.post(
            URL,
            {
                "device_group": group.pk,
                "confirm_timeout": 5,
                "rollout": {"canary": 1, "wave_percent": 50},
            },
            format="json",
        )
        assert resp.status_code == 202, resp.content
        assert sent == []  # nothing goes to the broker before the rows are committed
    for callback in callbacks:
        callback()
    body = resp.json()
    assert body["status"] == "running" and body["confirm_timeout"] == 5
    assert [w["size"] for w in body["waves"]] == [1, 2] and body["waves"][0]["state"] == "running"
    assert [d["device_name"] for d in body["devices"]] == [d.name for d in devices]
    assert {d["state"] for d in body["devices"]} == {"queued"}
    assert sent == [body["devices"][0]["id"]]  # the canary only

    detail = api.get(f"{URL}{body['id']}/").json()
    assert (
        detail["target"]["kind"] == "device_group"
        and detail["devices"][0]["transitions"][0]["state"] == "queued"
    )
    assert detail["waves"][0]["states"] == {"queued": 1}
    listing = api.get(URL).json()
    assert listing["results"][0]["id"] == body["id"] and listing["results"][0]["counts"] == {
        "queued": 3
    }


def test_targets_by_devices_and_ruleset(api, sent, django_capture_on_commit_callbacks):
    ruleset, group = make_policy()
    a, b = make_device("web-a", group=group), make_device("web-b")
    with django_capture_on_commit_callbacks(execute=True):
        by_rs = api.post(URL, {"ruleset": ruleset.pk}, format="json").json()
        by_ids = api.post(URL, {"devices": [b.pk]}, format="json").json()
    assert [d["device_name"] for d in by_rs["devices"]] == ["web-a"]
    assert [d["device_name"] for d in by_ids["devices"]] == ["web-b"]
    assert len(sent) == 2 and a.pk != b.pk


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "non_field_errors"),
        ({"devices": [1], "ruleset": 1}, "non_field_errors"),
        ({"devices": [99999]}, "devices"),
        ({"device_group": 99999}, "device_group"),
        ({"devices": [1], "confirm_timeout": -1}, "confirm_timeout"),
        ({"devices": [1], "rollout": {"wave_size": 2, "wave_percent": 10}}, "rollout"),
        ({"devices": [1], "revision": 99999}, "revision"),
    ],
)
def test_validation_errors_are_400(api, sent, body, field):
    make_device("web-1", pk=1)
    resp = api.post(URL, body, format="json")
    assert resp.status_code == 400 and field in resp.json(), resp.content
    assert sent == []


def test_empty_group_is_refused(api, sent):
    _, group = make_policy()
    resp = api.post(URL, {"device_group": group.pk}, format="json")
    assert resp.status_code == 400 and "has no devices" in str(resp.json())


def test_viewers_read_but_cannot_deploy(viewer_api, api_client_for, sent):
    device = make_device("web-1")
    assert viewer_api.post(URL, {"devices": [device.pk]}, format="json").status_code == 403
    assert viewer_api.get(URL).status_code == 200
    assert api_client_for(None).get(URL).status_code in (401, 403)


def test_counter_endpoints(api):
    ruleset, group = make_policy(ports=(80, 443))
    device = make_device("web-1", group=group)
    used = ruleset.rules.order_by("position").first()
    services.counters_ingest(
        device=device,
        counters={str(used.uuid): {"packets": 7, "bytes": 700}},
        at=timezone.now() - timedelta(days=1),
    )
    rows = api.get("/api/v1/rule-counters/", {"rule_uuid": str(used.uuid)}).json()["results"]
    assert rows[0]["packets"] == 7 and rows[0]["device_name"] == "web-1"
    unused = api.get("/api/v1/rule-counters/unused/", {"days": 7}).json()
    assert unused["count"] == 1 and unused["results"][0]["rule"] != str(used.uuid)
    assert unused["window_days"] == 7 and unused["next"] is None
    assert api.get("/api/v1/rule-counters/unused/", {"days": "x"}).status_code == 400


def test_unused_rules_filter_by_rule_set_and_page(api):
    web, _ = make_policy(ports=(80, 443))
    db, _ = make_policy("db", ports=(5432, 5433, 5434))
    url = "/api/v1/rule-counters/unused/"
    by_id = api.get(url, {"ruleset": web.pk}).json()
    assert by_id["count"] == 2 and {r["ruleset"] for r in by_id["results"]} == {"web"}
    by_name = api.get(url, {"ruleset": "db", "page_size": 2}).json()
    assert by_name["count"] == 3 and len(by_name["results"]) == 2 and by_name["next"]
    assert [r["position"] for r in by_name["results"]] == sorted(
        db.rules.values_list("position", flat=True)
    )[:2]
    rest = api.get(url, {"ruleset": "db", "limit": 2, "offset": 2}).json()
    assert len(rest["results"]) == 1 and rest["next"] is None
    assert api.get(url).json()["count"] == 5
    missing = api.get(url, {"ruleset": "nope"})
    assert missing.status_code == 400 and "ruleset" in missing.json()
