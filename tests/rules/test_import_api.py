"""POST /api/v1/policy/import/, GET /api/v1/policy/export/ and the two management commands."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from rules.exporter import export_document
from rules.models import AddressObject, RuleSet

DEMO = Path(__file__).resolve().parents[2] / "console" / "demo-policy.yaml"
IMPORT, EXPORT = "/api/v1/policy/import/", "/api/v1/policy/export/"
pytestmark = pytest.mark.django_db


def post_yaml(client, text: str, query: str = ""):
    return client.post(IMPORT + query, data=text, content_type="application/yaml")


def test_import_yaml_then_json_export_reimports_as_a_no_op(api):
    res = post_yaml(api, DEMO.read_text())
    assert res.status_code == 200, res.content
    assert res.json()["created"]["rulesets"] == ["web-baseline"] and res.json()["changed"]
    exported = api.get(EXPORT + "?format=json")
    assert exported.status_code == 200 and exported["Content-Type"].startswith("application/json")
    res = api.post(IMPORT, data=exported.content, content_type="application/json")
    assert res.status_code == 200 and res.json()["changed"] is False, res.json()


def test_dry_run_returns_the_plan_and_changes_nothing(api):
    res = post_yaml(api, DEMO.read_text(), "?dry_run=1")
    assert res.status_code == 200
    plan = res.json()
    assert plan["dry_run"] and plan["created"]["devices"] == ["demo"]
    assert plan["summary"]["created"]["rules"] == 4
    assert not RuleSet.objects.exists() and not AddressObject.objects.exists()


def test_prune_query_deletes_unnamed_objects(api):
    post_yaml(api, DEMO.read_text())
    doc = yaml.safe_load(DEMO.read_text())
    doc["addresses"].append({"name": "extra", "value": "198.18.3.3"})
    post_yaml(api, yaml.safe_dump(doc))
    res = post_yaml(api, DEMO.read_text(), "?prune=1")
    assert res.json()["deleted"]["addresses"] == ["extra"]


def test_a_bad_entry_is_a_400_naming_entry_and_field_and_changes_nothing(api):
    doc = yaml.safe_load(DEMO.read_text())
    doc["services"][1]["ports"] = ["443", "70000"]
    res = post_yaml(api, yaml.safe_dump(doc))
    assert res.status_code == 400
    errors = res.json()["errors"]
    assert errors[0]["path"] == "services[https].ports[1]" and "70000" in errors[0]["message"]
    assert not AddressObject.objects.exists()


def test_unknown_key_and_yaml_syntax_error_are_400s(api):
    res = post_yaml(api, "version: 1\naddresses:\n  - {name: a, value: 198.18.0.1, colour: red}\n")
    assert res.status_code == 400 and res.json()["errors"][0]["path"] == "addresses[a].colour"
    res = post_yaml(api, "version: 1\naddresses: [\n  {name: a\n")
    assert res.status_code == 400 and res.json()["line"] == 4
    res = api.post(IMPORT, data='{"version": 1,', content_type="application/json")
    assert res.status_code == 400 and res.json()["line"] == 1
    res = post_yaml(api, "- just\n- a list\n")
    assert res.status_code == 400 and res.json()["errors"][0]["path"] == "document"


def test_permissions(viewer_api, api_client_for):
    assert post_yaml(viewer_api, DEMO.read_text()).status_code == 403
    assert post_yaml(viewer_api, DEMO.read_text(), "?dry_run=1").status_code == 403
    assert viewer_api.get(EXPORT).status_code == 200
    assert api_client_for(None).get(EXPORT).status_code in (401, 403)


def test_export_yaml_filtered_by_ruleset_and_device(api):
    doc = yaml.safe_load(DEMO.read_text())
    doc["rulesets"].append({"name": "lonely", "rules": [{"chain": "input", "action": "drop"}]})
    post_yaml(api, yaml.safe_dump(doc))
    res = api.get(EXPORT)
    assert res["Content-Type"].startswith("application/yaml")
    everything = yaml.safe_load(res.content)
    assert [r["name"] for r in everything["rulesets"]] == ["lonely", "web-baseline"]
    only = yaml.safe_load(api.get(EXPORT + "?ruleset=lonely").content)
    assert [r["name"] for r in only["rulesets"]] == ["lonely"] and only.get("devices", []) == []
    by_device = yaml.safe_load(api.get(EXPORT + "?device=demo").content)
    assert [r["name"] for r in by_device["rulesets"]] == ["web-baseline"]
    assert [d["name"] for d in by_device["devices"]] == ["demo"]
    assert api.get(EXPORT + "?ruleset=nope").status_code == 400


def test_export_is_deterministic_text(api):
    post_yaml(api, DEMO.read_text())
    first, second = api.get(EXPORT).content, api.get(EXPORT).content
    assert first == second
    assert list(yaml.safe_load(first)) == [
        "version",
        "addresses",
        "address_groups",
        "services",
        "service_groups",
        "rulesets",
        "device_groups",
        "devices",
    ]


def test_commands_import_dry_run_prune_and_export(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    call_command("rampart_import", str(DEMO), "--dry-run", stdout=out, stderr=err)
    assert json.loads(out.getvalue())["dry_run"] and not RuleSet.objects.exists()
    call_command("rampart_import", str(DEMO), stdout=io.StringIO(), stderr=io.StringIO())
    assert RuleSet.objects.filter(name="web-baseline").exists()
    target = tmp_path / "policy.json"
    call_command("rampart_export", "-o", str(target))
    assert json.loads(target.read_text()) == export_document()
    err = io.StringIO()
    call_command("rampart_import", str(target), stdout=io.StringIO(), stderr=err)
    assert "nothing to change" in err.getvalue()
    out = io.StringIO()
    call_command("rampart_export", "--ruleset", "web-baseline", "--format", "yaml", stdout=out)
    assert yaml.safe_load(out.getvalue())["rulesets"][0]["name"] == "web-baseline"
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace('ports: ["53"]', 'ports: ["0"]'))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("rampart_import", str(bad), stdout=io.StringIO(), stderr=err)
    assert "services[dns].ports[0]" in err.getvalue()
    pruned = tmp_path / "pruned.yaml"
    pruned.write_text("version: 1\n")  # no devices: the device keeps its group and rule set
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("rampart_import", str(pruned), "--prune", stdout=io.StringIO(), stderr=err)
    assert "rulesets[web-baseline]: cannot prune" in err.getvalue()
    assert RuleSet.objects.exists() and AddressObject.objects.exists()
    pruned.write_text(
        "version: 1\n"
        "devices: [{name: demo, address: 198.18.0.2, management_sources: [198.18.0.1]}]\n"
    )
    err = io.StringIO()
    with pytest.raises(CommandError):  # a device group goes: needs the count
        call_command("rampart_import", str(pruned), "--prune", stdout=io.StringIO(), stderr=err)
    assert "repeat with confirm_prune=11" in err.getvalue()
    call_command(
        "rampart_import",
        str(pruned),
        "--prune",
        "--confirm-prune",
        "11",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert not RuleSet.objects.exists() and not AddressObject.objects.exists()
