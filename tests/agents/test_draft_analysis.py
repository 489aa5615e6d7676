"""Analysis of a draft rule (POST /api/v1/rulesets/{id}/analyse-draft/): the same findings a
save would give, those another rule set causes on a device, field messages for half-typed
input, and nothing stored."""

from __future__ import annotations

import pytest

from core.audit.models import AuditEntry
from rules.models import Rule, RuleSet
from tests.support.draft_policy import edge_and_base

pytestmark = pytest.mark.django_db


@pytest.fixture
def edge() -> RuleSet:
    return edge_and_base()


def _post(api, ruleset: RuleSet, body: dict):
    return api.post(f"/api/v1/rulesets/{ruleset.pk}/analyse-draft/", body, format="json")


def test_shadowed_draft_is_found_and_nothing_is_stored(api, edge):
    rules_before, audit_before = Rule.objects.count(), AuditEntry.objects.count()
    draft = {"action": "drop", "sources": ["198.18.0.7"], "protocol": "tcp", "dports": ["22"]}
    response = _post(api, edge, {"rule": draft})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["position"] == 2
    kinds = [(f["kind"], f["source"]) for f in body["findings"]]
    assert kinds == [("shadowed", "ruleset")]
    assert "edge rule 1" in body["findings"][0]["message"]
    assert body["devices"] == ["fw-1"]
    # fixed: the same rule placed first is not shadowed
    fixed = _post(api, edge, {"rule": draft, "position": 1}).json()
    assert fixed["position"] == 1
    assert [f for f in fixed["findings"] if f["kind"] == "shadowed"] == []
    assert Rule.objects.count() == rules_before
    assert AuditEntry.objects.count() == audit_before


def test_finding_caused_by_another_ruleset_on_a_device(api, edge):
    draft = {"action": "accept", "sources": ["198.18.5.9"], "protocol": "tcp", "dports": ["443"]}
    body = _post(api, edge, {"rule": draft}).json()
    device = [f for f in body["findings"] if f["source"] == "device"]
    assert len(device) == 1, body
    assert device[0]["kind"] == "shadowed"
    assert device[0]["devices"] == ["fw-1"]
    assert "base rule 1" in device[0]["message"]


def test_editing_a_rule_replaces_it_in_place(api, edge):
    first = Rule.objects.get(ruleset=edge, position=1)
    draft = {"action": "accept", "sources": ["198.18.0.0/24"], "protocol": "tcp", "dports": ["23"]}
    body = _post(api, edge, {"rule": draft, "replaces": first.pk}).json()
    assert body["position"] == 1
    assert body["draft_id"] == str(first.uuid)
    assert body["findings"] == []
    first.refresh_from_db()
    assert first.dports == ["22"]


@pytest.mark.parametrize(
    ("draft", "field"),
    [
        ({"action": "accept", "sources": ["198.18.0."]}, "sources"),
        ({"action": "accept", "sources": ["198.18.0.0/3x"]}, "sources"),
        ({"action": "accept", "protocol": "tcp", "dports": ["70000"]}, "dports"),
        ({"action": "sometimes"}, "action"),
        ({"action": "accept", "in_zone": "nowhere"}, "in_zone"),
        ({"action": "accept", "sources": "198.18.0.1"}, "sources"),
        ({"action": "accept", "log": True, "log_prefix": "cost $5"}, "log_prefix"),
        ({"action": "accept", "log": True, "log_prefix": "a\u2028b"}, "log_prefix"),
    ],
)
def test_half_typed_input_is_a_field_message(api, edge, draft, field):
    response = _post(api, edge, {"rule": draft})
    assert response.status_code == 400, response.content
    assert field in str(response.json())


def test_bad_envelope_and_permissions(api, viewer_api, edge):
    assert _post(api, edge, {"rule": {}, "replaces": 999999}).status_code == 400
    assert _post(api, edge, {"rule": {}, "position": 0}).status_code == 400
    assert _post(api, edge, {}).status_code == 400
    assert _post(viewer_api, edge, {"rule": {"action": "accept"}}).status_code == 403


def test_a_draft_with_huge_lists_is_refused_before_any_analysis(api, edge):
    """The editor asks every ~300 ms: one request must not make the console analyse a
    20,000-address rule."""
    sources = [f"198.18.{i // 256}.{i % 256}" for i in range(300)]
    response = _post(api, edge, {"rule": {"action": "accept", "sources": sources}})
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["sources"]
    assert "at most 256 entries" in response.json()["sources"][0]
