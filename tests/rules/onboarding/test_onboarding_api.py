"""POST /api/v1/policy/from-iptables-save/ and `rampart_import --from-iptables-save`."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from rules.models import AddressGroup, NatRule, Rule, RuleSet

from .dumps import DOCKER_HOST, DOCKER_IPSETS
from .test_translate_nat import NAT

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
    assert {s["line"] for s in body["skipped"]} >= {10, 33, 38}
    assert "plan" not in body and not RuleSet.objects.exists()


def test_import_and_dry_run(api):
    res = api.post(
        URL + "?import=1&dry_run=1&accept_losses=1",
        {"iptables_save": DOCKER_HOST, "ipset_save": IPSETS},
        format="json",
    )
    assert (
        res.json()["plan"]["created"]["rulesets"] == ["onboarded"] and not RuleSet.objects.exists()
    )
    res = api.post(
        URL + "?import=1&accept_losses=1",
        {"iptables_save": DOCKER_HOST, "ipset_save": IPSETS},
        format="json",
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
    assert (
        "verdict-changing loss: line 33 (more restrictive): -m mac has no equivalent"
        in err.getvalue()
    )
    assert "not imported: chain DOCKER belongs to Docker" in err.getvalue()
    assert emitted.exists() and not RuleSet.objects.exists()
    args = ["--from-iptables-save", str(dump), "--ipset-save", str(sets), "--ruleset", "dh"]
    with pytest.raises(CommandError, match="1 untranslated line.* accept_losses=1"):
        call_command("rampart_import", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert not RuleSet.objects.exists()
    out = io.StringIO()
    call_command(
        "rampart_import",
        *args[:-1],
        "docker-host",
        "--accept-losses",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert json.loads(out.getvalue())["created"]["rulesets"] == ["docker-host"]
    call_command(
        "rampart_import", str(emitted), "--dry-run", stdout=io.StringIO(), stderr=io.StringIO()
    )


BASTION_LOCKOUT = """\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:SSH_IN - [0:0]
-A INPUT -p tcp -m tcp --dport 22 -m recent --rcheck --name admins -j ACCEPT
-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 23 -m hashlimit --hashlimit-above 1/sec --hashlimit-name t -j DROP
-A INPUT -p tcp -m tcp --dport 8745 -m owner --uid-owner 0 -j SSH_IN
-A SSH_IN -j ACCEPT
-A INPUT -p tcp -m tcp --dport 25 -j LOG
COMMIT
"""


def test_verdict_changing_losses_need_accept_losses(api):
    res = api.post(URL + "?import=1", {"iptables_save": BASTION_LOCKOUT}, format="json")
    assert res.status_code == 400 and not RuleSet.objects.exists()
    body = res.json()
    assert "3 untranslated line(s) change verdicts" in body["detail"]
    assert "2 with a lockout risk" in body["detail"] and "accept_losses=1" in body["detail"]
    losses = {s["line"]: (s["impact"], s["lockout"]) for s in body["losses"]}
    assert losses == {
        6: ("more restrictive", True),  # ssh admitted by -m recent: lost
        9: ("more restrictive", True),  # jump to an accepting chain, agent port
        8: ("more permissive", False),  # a hashlimit drop: lost
    }
    assert [s["line"] for s in body["losses"]] == [6, 9, 8]  # lockout risks first
    assert body["losses_text"][0].startswith("line 6 (more restrictive; LOCKOUT RISK")
    neutral = {s["line"]: s["impact"] for s in body["skipped"]}
    assert neutral[11] == "verdict-neutral"  # a LOG of its own
    # reached through the skipped jump at line 9, not "never reached"
    assert "reached only through line 9" in {s["line"]: s["reason"] for s in body["skipped"]}[10]
    res = api.post(
        URL + "?import=1&accept_losses=1", {"iptables_save": BASTION_LOCKOUT}, format="json"
    )
    assert res.status_code == 200 and RuleSet.objects.filter(name="onboarded").exists()


def test_a_dump_without_losses_imports_without_the_flag(api):
    dump = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 23 -j DROP\nCOMMIT\n"
    res = api.post(URL + "?import=1", {"iptables_save": dump}, format="json")
    assert res.status_code == 200 and res.json()["losses"] == []


NFT_TEXT = """\
table inet firewalld {
\tchain filter_INPUT {
\t\ttype filter hook input priority filter + 10; policy accept;
\t}
}
"""


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("", "the dump is empty"),
        ("# Generated by iptables-save\n\n", "the dump is empty"),
        (NFT_TEXT, "given the output of `nft list ruleset` (nftables, not iptables)"),
        ('{"nftables": [{"metainfo": {}}]}', "`nft -j list ruleset`"),
        ("hello\nworld\n", "given 2 line(s), none of them iptables-save's (first: 'hello')"),
    ],
)
def test_empty_or_foreign_input_is_a_400_saying_what_it_is(api, given, says):
    for res in (
        api.post(URL, {"iptables_save": given}, format="json"),
        api.post(URL, data=given, content_type="text/plain"),
    ):
        assert res.status_code == 400, res.content
        (message,) = res.json()["iptables_save"]
        assert says in message and "expected the output of `iptables-save`" in message


def test_command_refuses_what_is_not_a_dump(tmp_path):
    dump = tmp_path / "nft.txt"
    dump.write_text(NFT_TEXT)
    with pytest.raises(CommandError, match="nft list ruleset"):
        call_command("rampart_import", "--from-iptables-save", str(dump), stderr=io.StringIO())


def test_ipv6_kept_open_and_said_so(api):
    dump = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    body = api.post(URL, {"iptables_save": dump}, format="json").json()
    assert "the host accepted all IPv6" in body["ipv6"] and "in input" in body["ipv6"]
    rules = body["document"]["rulesets"][0]["rules"]
    assert [(r["chain"], r["sources"]) for r in rules if r["sources"] == ["::/0"]] == [
        ("input", ["::/0"]),
        ("forward", ["::/0"]),
        ("output", ["::/0"]),
    ]
    body = api.post(URL, {"iptables_save": dump, "keep_ipv6": False}, format="json").json()
    assert body["ipv6"] == "" and all(
        r["sources"] != ["::/0"] for r in body["document"]["rulesets"][0]["rules"]
    )


def test_nat_entries_are_imported(api):
    res = api.post(URL + "?import=1", {"iptables_save": NAT, "ruleset": "gw"}, format="json")
    assert res.status_code == 400 and {s["line"] for s in res.json()["losses"]} == {13}
    res = api.post(
        URL + "?import=1&accept_losses=1", {"iptables_save": NAT, "ruleset": "gw"}, format="json"
    )
    assert res.status_code == 200, res.content
    # DNAT, SNAT, MASQUERADE, REDIRECT and the one inlined from the user chain fwd
    assert NatRule.objects.filter(ruleset__name="gw").count() == 7


def test_policy_import_of_a_device_naming_an_onboarded_ruleset(api):
    """Issue 17: a device created through POST /policy/import/ that names a rule set made
    by onboarding (so not in the document itself) was refused as an unknown rule set."""
    dump = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 23 -j DROP\nCOMMIT\n"
    res = api.post(URL + "?import=1", {"iptables_save": dump, "ruleset": "web-7"}, format="json")
    assert res.status_code == 200, res.content
    device = (
        "devices: [{name: web-7, address: 198.18.0.70, rulesets: [web-7],"
        " management_sources: [198.18.0.0/24]}]\n"
    )
    res = api.post("/api/v1/policy/import/", data=device, content_type="application/yaml")
    assert res.status_code == 200, res.content
    assert [d.name for d in RuleSet.objects.get(name="web-7").devices.all()] == ["web-7"]
    missing = device.replace("rulesets: [web-7]", "rulesets: [nope]")
    res = api.post("/api/v1/policy/import/", data=missing, content_type="application/yaml")
    assert res.status_code == 400 and "unknown rule set 'nope'" in res.content.decode()
