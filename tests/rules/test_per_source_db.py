"""`rate_limit_per_source` through the console: imported, exported, set over the API,
refused with the compiler's words (kernel bounds) where the document
would refuse it."""

from __future__ import annotations

import pytest

from dashboard.templatetags.rule_cells import options_cell
from rules.exporter import export_document
from rules.importer import import_document
from rules.models import Rule, RuleSet

pytestmark = pytest.mark.django_db
RULES = "/api/v1/rules/"
LIMIT = {"rate": "6/minute", "burst": 3, "ipv4_prefix": 24}


def doc(limit: dict | None) -> dict:
    rule = {
        "id": "2f1c3c1e-0000-4000-8000-000000000017",
        "chain": "input",
        "action": "accept",
        "protocol": "tcp",
        "dports": ["22"],
    }
    if limit:
        rule["rate_limit_per_source"] = limit
    return {"version": 1, "rulesets": [{"name": "ssh", "rules": [rule]}]}


def test_import_export_round_trip():
    import_document(doc(LIMIT), actor="test")
    assert Rule.objects.get().rate_limit_per_source == LIMIT
    (rule,) = export_document()["rulesets"][0]["rules"]
    assert rule["rate_limit_per_source"] == LIMIT
    assert not import_document(doc(LIMIT), actor="test", dry_run=True).changed  # idempotent
    import_document(doc(None), actor="test")  # an older document: no limit again
    assert Rule.objects.get().rate_limit_per_source is None
    assert "rate_limit_per_source" not in export_document()["rulesets"][0]["rules"][0]


def test_api_sets_and_refuses_with_the_kernel_bounds(api):
    rs = RuleSet.objects.create(name="ssh")
    ok = {"ruleset": rs.pk, "action": "accept", "protocol": "tcp", "rate_limit_per_source": LIMIT}
    res = api.post(RULES, ok, format="json")
    assert res.status_code == 201, res.content
    assert res.json()["rate_limit_per_source"] == LIMIT
    bad = {**ok, "rate_limit_per_source": {"rate": "1/day", "burst": 10}}
    res = api.post(RULES, bad, format="json")
    assert res.status_code == 400
    assert "interval × burst at most 111848 s" in res.json()["rate_limit_per_source"][0]
    res = api.post(RULES, {**ok, "rate_limit_per_source": {"burst": 3}}, format="json")
    assert res.status_code == 400 and "rate_limit_per_source" in res.json()


def test_options_cell_shows_the_per_source_rate():
    rule = Rule(rate_limit_per_source=LIMIT)
    assert "6/minute per source" in options_cell(type("Row", (), {"rule": rule})())
