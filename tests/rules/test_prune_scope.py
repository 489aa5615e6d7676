"""Prune stays in scope: a scoped export names what it covers, an import with prune deletes
only inside it, never a device unless the document lists devices, a large or fleet-wide
prune needs `confirm_prune`, and a dry run names exactly what the import does."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from compiler import DocumentError, PolicyDocument
from rules.exporter import export_named
from rules.importer import PruneNotConfirmed, import_document
from rules.models import AddressObject, Device, DeviceGroup, NatRule, Rule, RuleSet

DEMO = Path(__file__).resolve().parents[2] / "console" / "demo-policy.yaml"
IMPORT, EXPORT = "/api/v1/policy/import/", "/api/v1/policy/export/"
pytestmark = pytest.mark.django_db


def demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def fleet() -> dict:
    """The demo policy, a second rule set, device group and device besides it."""
    doc = demo()
    doc["rulesets"].append(
        {
            "name": "db",
            "rules": [
                {"chain": "input", "action": "accept", "dports": ["5432"], "protocol": "tcp"}
            ],
        }  # fmt: skip
    )
    doc["device_groups"].append({"name": "db", "rulesets": ["db"]})
    doc["devices"].append(
        {
            "name": "db-1",
            "address": "198.18.0.3",
            "groups": ["db"],
            "management_sources": ["198.18.0.1"],
        }
    )
    return doc


def counts() -> tuple[int, ...]:
    return tuple(
        m.objects.count() for m in (AddressObject, RuleSet, Rule, DeviceGroup, Device, NatRule)
    )


def test_a_scoped_export_names_its_scope(api):
    import_document(fleet())
    doc = yaml.safe_load(api.get(EXPORT + "?ruleset=web-baseline").content)
    assert doc["scope"] == {"rulesets": ["web-baseline"]}
    assert list(doc)[:3] == ["version", "scope", "addresses"]
    assert export_named(devices=["db-1"])["scope"] == {"devices": ["db-1"]}
    assert "scope" not in export_named()  # the whole policy: no scope, as before
    assert PolicyDocument.from_dict(doc).scope.names("rulesets") == ("web-baseline",)


def test_exporting_one_rule_set_and_importing_it_with_prune_deletes_nothing_else(api):
    import_document(fleet())
    before = counts()
    exported = api.get(EXPORT + "?ruleset=db&format=json").content
    response = api.post(IMPORT + "?prune=1", data=exported, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["changed"] is False and counts() == before
    plan = api.post(IMPORT + "?prune=1&dry_run=1", data=exported, content_type="application/json")
    assert not any(plan.json()["deleted"].values())


def test_prune_deletes_inside_the_scope_only():
    doc = fleet()
    doc["rulesets"].append({"name": "spare"})
    import_document(doc)
    AddressObject.objects.create(name="unused", value="198.18.7.7")
    scoped = export_named(rulesets=["spare"])
    assert scoped["scope"] == {"rulesets": ["spare"]}
    scoped["rulesets"] = []  # the document drops the rule set it speaks for
    plan = import_document(scoped, prune=True)
    assert {k: v for k, v in plan.deleted.items() if v} == {"rulesets": ["spare"]}
    assert AddressObject.objects.filter(name="unused").exists()  # objects are context
    assert RuleSet.objects.count() == 2 and Device.objects.count() == 2


def test_a_scope_naming_all_of_a_kind_prunes_all_of_it_and_nothing_else():
    import_document(fleet())
    doc = export_named(rulesets=["db"])
    doc["scope"] = {"addresses": "all"}
    AddressObject.objects.create(name="unused", value="198.18.7.7")
    plan = import_document(doc, prune=True)
    assert plan.deleted["addresses"] == ["unused"]
    assert [k for k, v in plan.deleted.items() if v] == ["addresses"]


def test_a_document_without_devices_never_deletes_a_device_or_group():
    doc = fleet()
    import_document({**doc, "rulesets": [*doc["rulesets"], {"name": "spare"}]})
    doc["devices"], doc["device_groups"] = [], []
    plan = import_document(doc, prune=True)  # an old document: no scope, all of the rest
    assert plan.deleted["rulesets"] == ["spare"]
    assert not plan.deleted["devices"] and not plan.deleted["device_groups"]
    assert Device.objects.count() == 2 and DeviceGroup.objects.count() == 2


def test_deleting_a_device_needs_confirm_prune_with_the_count(api):
    import_document(fleet())
    doc = fleet()
    doc["devices"] = [d for d in doc["devices"] if d["name"] != "db-1"]
    doc["device_groups"] = [g for g in doc["device_groups"] if g["name"] != "db"]
    text = yaml.safe_dump(doc)
    before = counts()
    refused = api.post(IMPORT + "?prune=1", data=text, content_type="application/yaml")
    assert refused.status_code == 400
    body = refused.json()
    assert body["confirm_prune"] == 2
    assert body["would_delete"] == {"devices": ["db-1"], "device_groups": ["db"]}
    message = body["errors"][0]["message"]
    assert "would delete 2 objects (1 devices, 1 device groups)" in message
    assert body["errors"][0]["path"] == "confirm_prune" and counts() == before
    wrong = api.post(
        IMPORT + "?prune=1&confirm_prune=1", data=text, content_type="application/yaml"
    )
    assert wrong.status_code == 400 and "confirm_prune=1 does not match" in str(wrong.json())
    assert counts() == before
    dry = api.post(IMPORT + "?prune=1&dry_run=1", data=text, content_type="application/yaml")
    assert dry.status_code == 200 and dry.json()["confirm_prune"] == 2
    done = api.post(IMPORT + "?prune=1&confirm_prune=2", data=text, content_type="application/yaml")
    assert done.status_code == 200, done.content
    assert done.json()["deleted"]["devices"] == ["db-1"]
    assert not Device.objects.filter(name="db-1").exists()
    bad = api.post(IMPORT + "?prune=1&confirm_prune=x", data=text, content_type="application/yaml")
    assert bad.status_code == 400 and "confirm_prune" in bad.json()


def test_more_than_ten_deletions_need_confirm_prune():
    doc = demo()
    doc["addresses"] += [{"name": f"a{i}", "value": f"198.18.9.{i}"} for i in range(11)]
    import_document(doc)
    with pytest.raises(PruneNotConfirmed) as exc:
        import_document(demo(), prune=True)
    assert exc.value.count == 11 and len(exc.value.doomed["addresses"]) == 11
    assert AddressObject.objects.filter(name="a0").exists()
    ten = demo()
    ten["addresses"] += [{"name": "a0", "value": "198.18.9.0"}]
    assert len(import_document(ten, prune=True).deleted["addresses"]) == 10  # ten: no confirm
    assert import_document(demo(), prune=True).deleted["addresses"] == ["a0"]


def _rule_top(doc: dict, dport: str) -> dict:
    doc = copy.deepcopy(doc)
    rules = doc["rulesets"][0]["rules"]
    rules.insert(0, {"chain": "input", "action": "accept", "protocol": "tcp", "dports": [dport]})
    doc["rulesets"][0]["nat"] = [
        {"type": "dnat", "protocol": "tcp", "dports": [dport], "to": "198.18.1.10:8080"}
    ]
    return doc


def test_dry_run_and_import_report_the_same_ids():
    """Ids of new rules and NAT rules are derived, never random: a rule put on top takes
    the place (and would take the fallback id) of a stored one, and a NAT rule replaced by
    another at the same place does too."""
    import_document(_rule_top(demo(), "1000"))
    doc = _rule_top(demo(), "2000")
    doc["rulesets"][0]["rules"].insert(0, {"chain": "input", "action": "drop"})
    dry = import_document(doc, dry_run=True, prune=True)
    real = import_document(doc, prune=True)
    assert dry.created["rules"] and dry.created["nat"]
    assert {**dry.to_dict(), "dry_run": False} == real.to_dict()
    created = {label.split()[-1] for label in real.created["rules"] + real.created["nat"]}
    stored = {str(u) for u in Rule.objects.values_list("uuid", flat=True)}
    stored |= {str(u) for u in NatRule.objects.values_list("uuid", flat=True)}
    assert created <= stored


def test_the_commands_keep_the_scope_and_take_confirm_prune(tmp_path):
    import_document(fleet())
    out = tmp_path / "db.yaml"
    call_command("rampart_export", "--ruleset", "db", "-o", str(out))
    assert yaml.safe_load(out.read_text())["scope"] == {"rulesets": ["db"]}
    call_command("rampart_import", str(out), "--prune", stdout=io.StringIO(), stderr=io.StringIO())
    assert Device.objects.count() == 2 and RuleSet.objects.count() == 2
    doc = fleet()
    doc["devices"] = doc["devices"][:1]
    full = tmp_path / "full.json"
    full.write_text(json.dumps(doc))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("rampart_import", str(full), "--prune", stdout=io.StringIO(), stderr=err)
    assert "confirm_prune=1" in err.getvalue() and Device.objects.count() == 2
    stdout = io.StringIO()
    call_command(
        "rampart_import", str(full), "--prune", "--confirm-prune", "1", stdout=stdout,
        stderr=io.StringIO(),
    )  # fmt: skip
    assert json.loads(stdout.getvalue())["deleted"]["devices"] == ["db-1"]


@pytest.mark.parametrize(
    ("scope", "path"),
    [
        ({"rulesets": "web"}, "scope.rulesets"),
        ({"rulesets": ["bad name"]}, "scope.rulesets[0]"),
        ({"rules": ["x"]}, "scope.rules"),
        (["rulesets"], "scope"),
    ],
)
def test_a_bad_scope_is_refused_by_the_parser(scope, path):
    with pytest.raises(DocumentError) as exc:
        PolicyDocument.from_dict({"version": 1, "scope": scope})
    assert path in [e.path for e in exc.value.errors]


def test_the_scope_round_trips_through_the_canonical_form():
    doc = PolicyDocument.from_dict({"version": 1, "scope": {"devices": [], "rulesets": ["b", "a"]}})
    assert doc.to_dict()["scope"] == {"rulesets": ["a", "b"], "devices": []}
    assert PolicyDocument.from_dict(doc.to_dict()) == doc
    assert doc.scope.covers("devices") and not doc.scope.covers("addresses")


@pytest.mark.parametrize("confirm", ["²", "¹⁰", "x", "-1"])
def test_confirm_prune_that_is_no_whole_number_is_a_400(api, confirm):
    """`str.isdigit` takes superscripts, which `int` refuses: the check is `isdecimal`, so
    such a value is a field error, never a 500, and nothing is imported."""
    import_document(fleet())
    doc = fleet()
    doc["devices"] = [d for d in doc["devices"] if d["name"] != "db-1"]
    before = counts()
    response = api.post(
        f"{IMPORT}?prune=1&confirm_prune={confirm}",
        data=yaml.safe_dump(doc),
        content_type="application/yaml",
    )
    assert response.status_code == 400, response.content
    assert "confirm_prune" in str(response.json()) and counts() == before
