"""POST /api/v1/policy/from-iptables-save/ and `rampart_import --from-iptables-save`."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from rules.models import AddressGroup, Rule, RuleSet

from .dumps import DOCKER_HOST, DOCKER_IPSETS

URL = "/api/v1/policy/from-iptables-save/"
IPSETS = DOCKER_IPSETS.format(admin="198.18.0.7", blocked="198.18.66.6")
pytestmark = pytest.mark.django_db


def test_translate_only_changes_nothing(api):
    res = api.post(
        URL, {"iptables_save": DOCKER_HOST, "ipset_save": IPSETS, "ruleset": "web-1"}, format="json"
    )
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["document"]["rulesets"][0]["name"] == "web-1"
    assert {s["line"] for s in body["skipped"]} >= {10, 33, 34, 38}
    assert "plan" not in body and not RuleSet.objects.exists()


def test_import_and_dry_run(api):
    res = api.post(
        URL + "?import=1&dry_run=1",
        {"iptables_save": DOCKER_HOST, "ipset_save": IPSETS},
        format="json",
    )
    assert (
        res.json()["plan"]["created"]["rulesets"] == ["onboarded"] and not RuleSet.objects.exists()
    )
    res = api.post(
        URL + "?import=1", {"iptables_save": DOCKER_HOST, "ipset_save": IPSETS}, format="json"
    )
    assert res.status_code == 200
    assert Rule.objects.filter(ruleset__name="onboarded").count() == len(
        res.json()["document"]["rulesets"][0]["rules"]
    )
    assert set(AddressGroup.objects.values_list("name", flat=True)) == {
        "onboarded.admins",
        "onboarded.blocklist",
    }


def test_plain_text_body_and_bad_requests(api, viewer_api):
    res = api.post(URL, data=DOCKER_HOST, content_type="text/plain")
    assert res.status_code == 200 and res.json()["family"] == 4
    assert api.post(URL, {"ruleset": "x"}, format="json").json() == {
        "iptables_save": ["is required"]
    }
    res = api.post(URL, {"iptables_save": DOCKER_HOST, "ruleset": "198.18.0.1"}, format="json")
    assert res.status_code == 400 and "ruleset" in res.json()
    assert viewer_api.post(URL, data=DOCKER_HOST, content_type="text/plain").status_code == 403


def test_command_from_iptables_save(tmp_path):
    dump, sets = tmp_path / "iptables.txt", tmp_path / "ipset.txt"
    dump.write_text(DOCKER_HOST)
    sets.write_text(IPSETS)
    out, err = io.StringIO(), io.StringIO()
    emitted = tmp_path / "doc.yaml"
    call_command(
        "rampart_import",
        "--from-iptables-save",
        str(dump),
        "--ipset-save",
        str(sets),
        "--emit",
        str(emitted),
        stdout=out,
        stderr=err,
    )
    assert "line 33: skipped: -m mac has no equivalent" in err.getvalue()
    assert "not imported: chain DOCKER belongs to Docker" in err.getvalue()
    assert emitted.exists() and not RuleSet.objects.exists()
    out = io.StringIO()
    call_command(
        "rampart_import",
        "--from-iptables-save",
        str(dump),
        "--ipset-save",
        str(sets),
        "--ruleset",
        "docker-host",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert json.loads(out.getvalue())["created"]["rulesets"] == ["docker-host"]
    call_command(
        "rampart_import", str(emitted), "--dry-run", stdout=io.StringIO(), stderr=io.StringIO()
    )
