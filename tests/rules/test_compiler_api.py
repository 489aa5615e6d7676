"""Compiler endpoints (bundle, trace, analysis, validate) and `manage.py rampart_check`."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.management import call_command

from rules import importer
from tests.compiler import cases

pytestmark = pytest.mark.django_db

EXAMPLE = cases.DATA / "example.yaml"


@pytest.fixture
def policy():
    """The example document, imported into the database."""
    importer.import_document(cases.example())
    from rules.models import Device, RuleSet

    return {
        "device": Device.objects.get(name="web-1"),
        "ruleset": RuleSet.objects.get(name="web-baseline"),
    }


def test_bundle_is_the_compiled_document(policy, viewer_api):
    response = viewer_api.get(f"/api/v1/devices/{policy['device'].pk}/bundle/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert {"iptables_v4", "iptables_v6", "ipsets", "hash", "chains", "sets", "rules"} <= set(body)
    assert body["device"] == "web-1"
    assert '-A INPUT -m comment --comment "rpt:jump" -j RPT-INPUT' in body["iptables_v4"]
    assert "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1" in body["rules"]
    again = viewer_api.get(f"/api/v1/devices/{policy['device'].pk}/bundle/").json()
    assert again["hash"] == body["hash"]


def test_forward_fallthrough_device_flag_leaves_undecided_forwarding_to_docker(policy, viewer_api):
    device = policy["device"]
    device.default_forward = "accept"
    device.save()
    url = f"/api/v1/devices/{device.pk}/bundle/"
    plain = viewer_api.get(url).json()["iptables_v4"]
    device.forward_fallthrough = True
    device.save()
    docker = viewer_api.get(url).json()["iptables_v4"]
    forward_tail = [line for line in plain.splitlines() if line.startswith("-A RPT-FORWARD")][-1]
    assert forward_tail.endswith("-j ACCEPT")  # the default decides every forwarded packet
    assert forward_tail in plain and forward_tail not in docker  # now it returns to FORWARD


def test_bundle_needs_a_role_and_an_existing_device(policy, api_client_for, viewer_api):
    assert api_client_for(None).get(
        f"/api/v1/devices/{policy['device'].pk}/bundle/"
    ).status_code in (401, 403)
    assert viewer_api.get("/api/v1/devices/999999/bundle/").status_code == 404


def test_trace_returns_verdict_and_rule(policy, viewer_api):
    url = f"/api/v1/devices/{policy['device'].pk}/trace/"
    response = viewer_api.get(
        url,
        {
            "target": "candidate",
            "protocol": "tcp",
            "source": "198.18.7.5",
            "destination": "198.18.1.10",
            "dport": "3306",
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["target"] == "candidate"
    assert body["verdict"] == "drop"
    assert body["decided_by"]["ruleset"] == "web-baseline" and body["decided_by"]["position"] == 5
    assert body["path"][0]["chain"] == "INPUT"


def test_trace_takes_the_hop_limit(policy, viewer_api):
    """A routed neighbour solicitation (hop limit 64) is not the system ND accept's."""
    url = f"/api/v1/devices/{policy['device'].pk}/trace/"
    base = {
        "target": "candidate",
        "protocol": "icmpv6",
        "source": "2001:2::99",
        "destination": "2001:2::1",
        "icmp_type": "135",
    }
    tags = {
        hops: viewer_api.get(url, {**base, "hop_limit": hops}).json()["decided_by"]["tag"]
        for hops in ("255", "64")
    }
    assert tags == {"255": "rpt:sys:icmpv6-nd", "64": "rpt:sys:default"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (
            {
                "protocol": "tcp",
                "source": "198.18.0.1",
                "destination": "198.18.0.2",
                "dport": "70000",
            },
            "dport",
        ),
        (
            {
                "protocol": "icmpv6",
                "source": "2001:2::1",
                "destination": "2001:2::2",
                "hop_limit": "x",
            },
            "hop_limit",
        ),
        ({"protocol": "gre", "source": "198.18.0.1", "destination": "198.18.0.2"}, "protocol"),
        ({"protocol": "tcp", "destination": "198.18.0.2"}, "source"),
        ({"protocol": "tcp", "source": "198.18.0.1", "destination": "2001:2::1"}, "destination"),
        (
            {
                "protocol": "tcp",
                "source": "198.18.0.1",
                "destination": "198.18.0.2",
                "colour": "red",
            },
            "colour",
        ),
        (
            {"protocol": "tcp", "source": "198.18.0.1", "destination": "198.18.0.2", "state": "x"},
            "state",
        ),
    ],
)
def test_bad_trace_input_is_a_400_naming_the_field(policy, viewer_api, params, field):
    response = viewer_api.get(f"/api/v1/devices/{policy['device'].pk}/trace/", params)
    assert response.status_code == 400
    assert field in response.json()


def test_ruleset_and_device_analysis(policy, api, viewer_api):
    rs = policy["ruleset"]
    body = viewer_api.get(f"/api/v1/rulesets/{rs.pk}/analysis/").json()
    assert body["ruleset"] == "web-baseline"
    kinds = {f["kind"] for f in body["findings"]}
    assert "shadowed" not in kinds
    device = viewer_api.get(f"/api/v1/devices/{policy['device'].pk}/analysis/").json()
    redundant = [f for f in device["findings"] if f["kind"] == "redundant"]
    assert [f["rules"][0]["position"] for f in redundant] == [5, 6]  # the defaults do the same
    assert viewer_api.get("/api/v1/rulesets/999999/analysis/").status_code == 404


def test_validate_yaml_body_changes_nothing(policy, viewer_api):
    from rules.models import Rule

    before = Rule.objects.count()
    data = cases.example()
    data["rulesets"][0]["assertions"][1]["expect"] = "accept"
    response = viewer_api.post(
        "/api/v1/validate/", data=yaml.safe_dump(data), content_type="application/yaml"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is False and body["errors"] == []
    failed = [a for a in body["assertions"] if not a["passed"]]
    assert [a["name"] for a in failed] == ["no-mysql"]
    assert Rule.objects.count() == before


def test_validate_json_errors_name_the_rule(viewer_api, db):
    data = cases.example()
    data["rulesets"][0]["rules"][0]["dports"] = ["70000"]
    data["rulesets"][0]["rules"][0].pop("services")
    data["rulesets"][0]["rules"][0]["protocol"] = "udp"
    response = viewer_api.post(
        "/api/v1/validate/", data=json.dumps(data), content_type="application/json"
    )
    body = response.json()
    assert response.status_code == 200 and body["ok"] is False
    assert body["errors"] == [
        {
            "path": "rulesets[web-baseline].rules[0].dports[0]",
            "message": "port 70000 is out of range (1-65535)",
            "rule_id": "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1",
        }
    ]


def test_validate_a_stored_rule_set(policy, viewer_api):
    response = viewer_api.post(
        "/api/v1/validate/",
        data=json.dumps({"ruleset": policy["ruleset"].pk}),
        content_type="application/json",
    )
    body = response.json()
    assert response.status_code == 200 and body["ok"] is True
    assert [a["device"] for a in body["assertions"]] == [None, None]  # on the rule set alone
    bad = viewer_api.post(
        "/api/v1/validate/", data=json.dumps({"ruleset": "nope"}), content_type="application/json"
    )
    assert bad.status_code == 400 and "ruleset" in bad.json()


def test_validate_unparseable_body_is_a_400(viewer_api, db):
    response = viewer_api.post(
        "/api/v1/validate/", data="rulesets: [", content_type="application/yaml"
    )
    assert response.status_code == 400


def test_rampart_check_command(tmp_path, capsys):
    assert call_command("rampart_check", str(EXAMPLE)) is None
    assert "OK: 0 error(s)" in capsys.readouterr().out
    data = cases.example()
    data["rulesets"][0]["assertions"][0]["expect"] = "reject"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data, default=str))
    with pytest.raises(SystemExit) as info:
        call_command("rampart_check", str(bad), "--json")
    assert info.value.code == 1
    report = json.loads(capsys.readouterr().out)
    assert [a["passed"] for a in report["assertions"]] == [False, True]
    with pytest.raises(SystemExit) as info:
        call_command("rampart_check", str(tmp_path / "missing.yaml"))
    assert info.value.code == 2


def test_a_log_prefix_stored_before_the_tightening_is_a_field_error_not_a_500(policy, viewer_api):
    """A prefix the API accepted before 2026-12-07 (`$`, a tab, over 29 bytes) and no
    dataplane loads as written: the device's bundle says which rule and field, and
    nothing is compiled from it."""
    rule = policy["ruleset"].rules.first()
    rule.log, rule.log_prefix = True, "cost $5 "  # as stored by an older console
    rule.save()
    response = viewer_api.get(f"/api/v1/devices/{policy['device'].pk}/bundle/")
    assert response.status_code == 422, response.content
    (error,) = response.json()["errors"]
    assert error["path"].endswith("rules[0].log_prefix") and "$" in error["message"]
    assert error["rule_id"] == str(rule.uuid)
