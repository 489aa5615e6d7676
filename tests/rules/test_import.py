"""Import of the policy document: plan, dry run, prune, idempotency, all-or-nothing."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from compiler.document import fallback_rule_id
from core.audit.models import AuditEntry
from rules.exporter import export_document
from rules.importer import ImportFailed, import_document, import_document_file, load_text
from rules.models import AddressGroup, AddressObject, Rule, RuleSet, RuleSetRevision
from tests.support.documents import canonical

DEMO = Path(__file__).resolve().parents[2] / "console" / "demo-policy.yaml"
pytestmark = pytest.mark.django_db


def demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def with_fallback_ids(doc: dict) -> dict:
    """The document as the database keeps it: rules without `id` get their stable one."""
    doc = copy.deepcopy(doc)
    for rs in doc.get("rulesets", []):
        for i, rule in enumerate(rs.get("rules", [])):
            rule.setdefault("id", fallback_rule_id(rs["name"], "rules", i))
    return doc


def without_ids(doc: dict) -> dict:
    for rs in doc.get("rulesets", []):
        for rule in rs.get("rules", []):
            rule.pop("id", None)
    return doc


def test_import_creates_everything_in_the_plan_and_export_gives_it_back():
    plan = import_document(demo(), actor="test")
    assert plan.created["addresses"] == ["office", "web-1", "monitoring"]
    assert plan.created["address_groups"] == ["web-servers"]
    assert plan.created["service_groups"] == ["web"]
    assert len(plan.created["rules"]) == 4
    assert plan.created["devices"] == ["demo"]
    assert not any(plan.updated.values()) and not any(plan.deleted.values())
    assert canonical(export_document()) == canonical(with_fallback_ids(demo()))


def test_importing_twice_changes_nothing():
    import_document(demo())
    stamps = dict(Rule.objects.values_list("uuid", "last_updated"))
    revisions, audit = RuleSetRevision.objects.count(), AuditEntry.objects.count()
    assert revisions == 1
    plan = import_document(demo())
    assert not plan.changed, plan.to_dict()
    assert dict(Rule.objects.values_list("uuid", "last_updated")) == stamps
    assert not import_document(export_document()).changed
    assert (RuleSetRevision.objects.count(), AuditEntry.objects.count()) == (revisions, audit)


def test_one_audit_entry_carries_the_plan_and_revisions_follow_changes():
    import_document(demo(), actor="cli:alice")
    entries = list(AuditEntry.objects.filter(action="import"))
    assert len(entries) == 1
    assert entries[0].actor == "cli:alice" and entries[0].channel == "cli"
    assert entries[0].after["created"]["rulesets"] == ["web-baseline"]
    doc = demo()
    doc["services"][0]["ports"] = ["8080"]  # http, used by the rule set through group `web`
    import_document(doc, actor="cli:alice")
    assert AuditEntry.objects.filter(action="import").count() == 2
    assert RuleSetRevision.objects.filter(ruleset__name="web-baseline").count() == 2


def test_every_rule_the_import_writes_in_bulk_has_its_own_audit_entry():
    import_document(demo(), actor="cli:alice")
    created = AuditEntry.objects.filter(action="create", object_type="rules.rule")
    assert created.count() == 4
    assert all(e.after.get("sources") is not None for e in created)
    doc = export_document()  # rules carry their ids now, so these are updates and moves
    rules = doc["rulesets"][0]["rules"]
    rules[0]["comment"] = "changed by import"
    rules.insert(0, rules.pop())  # the last rule moves to the top
    import_document(doc, actor="cli:alice")
    updates = AuditEntry.objects.filter(action="update", object_type="rules.rule")
    assert any("changed by import" in str(e.after) for e in updates)
    assert any((e.before or {}).get("position") and e.after.get("position") for e in updates)


def test_dry_run_reports_the_plan_and_changes_nothing():
    import_document(demo())
    before = export_document()
    doc = demo()
    doc["addresses"].append({"name": "new-host", "value": "198.18.7.7"})
    doc["addresses"][0]["description"] = "moved"
    doc["rulesets"][0]["rules"].pop(1)
    doc["devices"] = []
    plan = import_document(doc, dry_run=True, prune=True)
    assert plan.dry_run and plan.changed
    assert plan.created["addresses"] == ["new-host"]
    assert plan.updated["addresses"] == ["office"]
    assert len(plan.deleted["rules"]) == 1
    assert plan.deleted["devices"] == []  # a document that lists no devices never deletes one
    assert export_document() == before
    assert not AddressObject.objects.filter(name="new-host").exists()
    assert not AuditEntry.objects.filter(action="import", after__dry_run=True).exists()
    assert RuleSetRevision.objects.count() == 1


def test_a_bad_entry_changes_nothing_and_names_entry_and_field():
    import_document(demo())
    before = export_document()
    doc = demo()
    doc["addresses"].append({"name": "fine", "value": "198.18.9.9"})
    doc["rulesets"][0]["rules"][2]["dports"] = ["99999"]
    with pytest.raises(ImportFailed) as info:
        import_document(doc)
    paths = [e.path for e in info.value.errors]
    assert paths == ["rulesets[web-baseline].rules[2].dports[0]"]
    assert export_document() == before


def test_a_database_limit_failing_late_still_changes_nothing():
    """The document allows 1000-character comments; the model keeps 200: rolled back."""
    import_document(demo())
    before = export_document()
    doc = demo()
    doc["addresses"].append({"name": "fine", "value": "198.18.9.9"})
    doc["rulesets"][0]["rules"][3]["comment"] = "x" * 300
    with pytest.raises(ImportFailed) as info:
        import_document(doc)
    assert [e.path for e in info.value.errors] == ["rulesets[web-baseline].rules[3].comment"]
    assert export_document() == before


def test_prune_deletes_what_the_document_no_longer_names():
    import_document(demo())
    doc = demo()
    doc["rulesets"][0]["rules"] = [
        r for r in doc["rulesets"][0]["rules"] if "monitoring" not in r.get("sources", [])
    ]
    doc["addresses"] = [a for a in doc["addresses"] if a["name"] != "monitoring"]
    doc["services"] = [s for s in doc["services"] if s["name"] != "dns"]
    kept = import_document(doc)  # without prune: nothing but the rule goes
    assert kept.deleted["rules"] and not kept.deleted["addresses"]
    assert AddressObject.objects.filter(name="monitoring").exists()
    plan = import_document(doc, prune=True)
    assert plan.deleted["addresses"] == ["monitoring"] and plan.deleted["services"] == ["dns"]
    assert not AddressObject.objects.filter(name="monitoring").exists()
    assert without_ids(canonical(export_document())) == canonical(doc)


def test_prune_key_in_the_document_and_nested_groups_are_pruned_in_order():
    doc = demo()
    doc["address_groups"] = [
        {"name": "inner", "members": ["198.18.5.1"]},
        {"name": "outer", "members": ["inner", "web-1"]},
        *doc["address_groups"],
    ]
    import_document(doc)
    doc = demo()
    doc["prune"] = True
    plan = import_document(doc)
    assert sorted(plan.deleted["address_groups"]) == ["inner", "outer"]
    assert list(AddressGroup.objects.values_list("name", flat=True)) == ["web-servers"]


def test_rules_are_matched_by_id_so_a_move_is_an_update():
    doc = with_fallback_ids(demo())
    import_document(doc)
    rules = doc["rulesets"][0]["rules"]
    rules.insert(0, rules.pop(3))
    rules[1]["comment"] = "changed"
    plan = import_document(doc)
    assert not plan.created["rules"] and not plan.deleted["rules"]
    assert len(plan.updated["rules"]) == 4
    order = list(Rule.objects.order_by("position").values_list("uuid", flat=True))
    assert [str(u) for u in order] == [r["id"] for r in rules]
    assert not import_document(doc).changed


def test_rules_without_id_are_matched_by_content():
    import_document(demo())
    ids = list(Rule.objects.order_by("position").values_list("uuid", flat=True))
    doc = demo()
    doc["rulesets"][0]["rules"].insert(
        0, {"chain": "input", "action": "drop", "sources": ["198.18.66.0/24"]}
    )
    plan = import_document(doc)
    assert len(plan.created["rules"]) == 1 and len(plan.updated["rules"]) == 4
    assert list(Rule.objects.order_by("position").values_list("uuid", flat=True))[1:] == ids


def test_a_rule_id_moves_between_rule_sets():
    doc = with_fallback_ids(demo())
    doc["rulesets"].append({"name": "other", "rules": []})
    import_document(doc)
    moved = doc["rulesets"][0]["rules"].pop(0)
    doc["rulesets"][1]["rules"].append(moved)
    plan = import_document(doc)
    assert plan.updated["rules"] and not plan.created["rules"] and not plan.deleted["rules"]
    assert Rule.objects.get(uuid=moved["id"]).ruleset.name == "other"


def test_a_device_without_address_is_an_error_naming_the_field():
    doc = demo()
    del doc["devices"][0]["address"]
    with pytest.raises(ImportFailed) as info:
        import_document(doc)
    assert [e.path for e in info.value.errors] == ["devices[demo].address"]
    assert not RuleSet.objects.exists()


def test_nat_rules_round_trip():
    doc = demo()
    doc["rulesets"][0]["nat"] = [
        {
            "type": "dnat",
            "in_interface": "eth0",
            "protocol": "tcp",
            "dports": ["80"],
            "to": "198.18.1.10:8080",
        },
        {"type": "masquerade", "out_interface": "eth0", "sources": ["office"]},
        {
            "type": "dnat",
            "chain": "output",
            "protocol": "tcp",
            "dports": ["81"],
            "to": "198.18.1.10:8081",
        },
    ]
    import_document(doc)
    assert not import_document(doc).changed
    exported = export_document()
    assert not import_document(exported).changed
    got = canonical(exported)["rulesets"][0]["nat"]
    assert [(n["type"], n.get("chain")) for n in got] == [
        ("dnat", "prerouting"),
        ("masquerade", "postrouting"),
        ("dnat", "output"),
    ]


def test_yaml_errors_carry_the_line_and_duplicate_keys_are_refused():
    with pytest.raises(ImportFailed) as info:
        load_text("version: 1\naddresses:\n  - {name: a, value: [\n")
    assert info.value.line == 4
    with pytest.raises(ImportFailed) as info:
        load_text("version: 1\naddresses: []\naddresses: []\n")
    assert info.value.line == 3 and "duplicate key" in info.value.errors[0].message


def test_import_document_file_reads_the_demo(tmp_path):
    plan = import_document_file(DEMO, actor="system:bootstrap")
    assert plan.created["rulesets"] == ["web-baseline"]
    path = tmp_path / "p.json"
    import json

    path.write_text(json.dumps(export_document()))
    assert not import_document_file(path).changed


def big(n: int, top: bool = False) -> dict:
    rules = [
        {
            "chain": "input",
            "action": "accept",
            "sources": [f"198.18.{i // 250}.{i % 250 + 1}"],
            "protocol": "tcp",
            "dports": [str(1000 + i)],
        }
        for i in range(n)
    ]
    if top:
        rules.insert(0, {"chain": "input", "action": "drop", "protocol": "udp"})
    return {"version": 1, "rulesets": [{"name": "big", "rules": rules}]}


def queries(doc: dict) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        import_document(doc)
    return len(ctx.captured_queries)


def test_queries_do_not_grow_with_the_number_of_rules():
    """Thousands of rules: bulk reads and writes, not a query per rule."""
    counts = {}
    for n in (20, 400):
        import_document({"version": 1}, prune=True)
        first = queries(big(n))
        noop = queries(big(n))
        shifted = queries(big(n, top=True))  # one new rule on top: every other moves down
        counts[n] = (first, noop, shifted)
    assert counts[20][1] == counts[400][1], counts
    assert counts[400][2] - counts[20][2] <= 4, counts
    # creating: bulk inserts (SQLite caps rows per INSERT by its variable limit)
    assert counts[400][0] - counts[20][0] <= 380 // 20, counts
