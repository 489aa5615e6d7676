"""`reject_with` through the console: imported, exported, set over the API, and refused
with the compiler's words where the document would refuse it."""

from __future__ import annotations

import pytest

from rules.exporter import export_document
from rules.importer import import_document
from rules.models import Rule, RuleSet

pytestmark = pytest.mark.django_db
RULES = "/api/v1/rules/"


def doc(reject_with: str | None) -> dict:
    rule = {
        "id": "2f1c3c1e-0000-4000-8000-000000000001",
        "chain": "input",
        "action": "reject",
        "protocol": "tcp",
        "dports": ["25"],
    }
    if reject_with:
        rule["reject_with"] = reject_with
    return {"version": 1, "rulesets": [{"name": "mail", "rules": [rule]}]}


def test_import_export_round_trip():
    import_document(doc("tcp-reset"), actor="test")
    assert Rule.objects.get().reject_with == "tcp-reset"
    (rule,) = export_document()["rulesets"][0]["rules"]
    assert rule["reject_with"] == "tcp-reset"
    assert list(rule)[:4] == ["id", "chain", "action", "reject_with"]
    plan = import_document(doc("tcp-reset"), actor="test", dry_run=True)
    assert not plan.changed  # idempotent
    import_document(doc(None), actor="test")  # an older document: the default again
    assert Rule.objects.get().reject_with == ""
    assert "reject_with" not in export_document()["rulesets"][0]["rules"][0]


def test_api_sets_and_refuses_reject_with(api):
    rs = RuleSet.objects.create(name="mail")
    ok = {"ruleset": rs.pk, "action": "reject", "protocol": "tcp", "reject_with": "tcp-reset"}
    res = api.post(RULES, ok, format="json")
    assert res.status_code == 201, res.content
    assert res.json()["reject_with"] == "tcp-reset"
    res = api.post(RULES, {**ok, "protocol": "udp"}, format="json")
    assert res.status_code == 400
    assert "tcp-reset needs protocol tcp" in res.json()["reject_with"][0]
    res = api.post(RULES, {**ok, "action": "accept"}, format="json")
    assert res.status_code == 400 and "needs action reject" in res.json()["reject_with"][0]
    res = api.post(RULES, {**ok, "reject_with": "icmp-bogus"}, format="json")
    assert res.status_code == 400 and "reject_with" in res.json()
