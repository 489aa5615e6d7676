"""`nft -j list ruleset` onboarding (no kernel): a recorded firewalld (nftables backend)
ruleset and hand-made JSON; every item of the JSON array is translated or reported with
its verdict class. test_onboarding_nft_netns.py migrates live nftables hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compiler import PolicyDocument
from rules.onboarding import NotADump, translate_iptables_save

FIREWALLD = (Path(__file__).parent.parent / "data" / "firewalld_nftables.json").read_text()


def accounted(result, text: str) -> None:
    items = json.loads(text)["nftables"]
    rules = {i for i, item in enumerate(items, start=1) if "rule" in item}
    done = set(result.translated) | set(result.nat_translated)
    done |= {s.line for s in result.skipped}
    assert rules <= done, f"items neither translated nor reported: {sorted(rules - done)}"


def test_firewalld_nftables_ruleset():
    result = translate_iptables_save(FIREWALLD, ruleset="fwd-nft")
    PolicyDocument.from_dict(result.document)
    accounted(result, FIREWALLD)
    rs = result.document["rulesets"][0]
    assert rs["description"] == "imported from nft -j list ruleset (IPv4, IPv6)"
    assert [(n["type"], n["dports"], n["to"]) for n in rs["nat"]] == [
        ("redirect", ["8081"], "8080"),
        ("dnat", ["9090"], "198.18.200.10:80"),
    ]
    inputs = [r for r in rs["rules"] if r["chain"] == "input"]
    v4 = [
        r
        for r in inputs
        if r.get("sources") != ["::/0"] and "fe80::/64" not in r.get("destinations", [])
    ]
    # the public zone: ct state, ct status dnat (the forwarded ports), lo, invalid, the
    # rich rule's drop, ssh, 8080, icmp, the zone's reject
    assert (v4[-1]["action"], v4[-1]["reject_with"]) == ("reject", "icmp-admin-prohibited")
    assert [r.get("dports") for r in v4[-5:]] == [None, ["22"], ["8080"], None, None]
    assert v4[-5]["sources"] == ["198.19.66.0/24"] and v4[-2]["protocol"] == "icmp"
    assert any(r.get("states") == ["dnat"] for r in inputs)  # ct status dnat
    assert all("nft item " in r["comment"] for r in rs["rules"])
    # IPv6 from the inet table: its own rules, no "kept open" rules
    assert result.ipv6 == "" and any(r.get("protocol") == "icmpv6" for r in inputs)
    losses = {s.line: s for s in result.losses()}
    masq = [s for s in losses.values() if "masquerade" in s.text]
    assert masq and masq[0].impact == "more restrictive"  # ! oifname lo: lost, ranked
    nd = [s for s in result.skipped if "nd-neighbor" in s.text]
    assert not nd  # neighbour discovery types: imported by number
    assert all(s.source == "nft -j list ruleset" for s in result.skipped)


def item(kind: str, **body) -> dict:
    return {kind: body}


def rule(chain: str, *expr: dict, table: str = "t", family: str = "inet") -> dict:
    return item("rule", family=family, table=table, chain=chain, expr=list(expr))


def match(left: dict, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
HAND = {
    "nftables": [
        {"metainfo": {"json_schema_version": 1}},
        item("table", family="inet", name="t"),  # 2
        item(
            "set",
            family="inet",
            table="t",
            name="admins",
            type="ipv4_addr",
            flags=["interval"],
            elem=["198.18.0.7", {"prefix": {"addr": "198.18.9.0", "len": 24}}],
        ),  # 3
        item("set", family="inet", table="t", name="web", type="inet_service", elem=[80, 443]),  # 4
        item(
            "chain",
            family="inet",
            table="t",
            name="in",
            type="filter",
            hook="input",
            prio=0,
            policy="drop",
        ),  # 5
        item(
            "chain",
            family="inet",
            table="t",
            name="late",
            type="filter",
            hook="input",
            prio=10,
            policy="accept",
        ),  # 6
        item("chain", family="inet", table="t", name="ssh"),  # 7
        rule(
            "in",
            match({"ct": {"key": "state"}}, {"set": ["established", "related"]}),
            {"accept": None},
        ),  # 8
        rule(
            "in",
            match({"meta": {"key": "iifname"}}, "eth*"),
            match(DPORT, "@web"),
            {"counter": None},
            {"accept": None},
        ),  # 9
        rule("in", match(DPORT, 22), {"jump": {"target": "ssh"}}),  # 10
        rule(
            "in",
            match({"meta": {"key": "l4proto"}}, "icmp"),
            {"limit": {"rate": 5, "per": "second", "burst": 10}},
            {"accept": None},
        ),  # 11
        rule("in", {"xt": {"type": "match", "name": "recent"}}, {"accept": None}),  # 12
        rule(
            "in", match(DPORT, 25), {"log": {"prefix": "smtp "}}, {"reject": {"type": "tcp reset"}}
        ),  # 13
        rule("ssh", match(SADDR, "@admins"), {"accept": None}),  # 14
        rule("ssh", {"drop": None}),  # 15
        rule("late", match(DPORT, 7000), {"drop": None}),  # 16
        item("table", family="arp", name="a"),  # 17
    ]
}


def test_hand_made_json_every_item_accounted():
    text = json.dumps(HAND)
    result = translate_iptables_save(text, ruleset="hand")
    PolicyDocument.from_dict(result.document)
    accounted(result, text)
    doc = result.document
    assert doc["address_groups"] == [
        {
            "name": "hand.t-admins",
            "members": ["198.18.0.7", "198.18.9.0/24"],
            "description": "from ipset t/admins (hash:net)",
        }
    ]
    rules = [r for r in doc["rulesets"][0]["rules"] if r.get("sources") != ["::/0"]]
    by_item = {}
    for r in (r for r in rules if r["comment"].startswith("nft item")):
        by_item.setdefault(int(r["comment"].rsplit(" ", 1)[1]), []).append(r)
    assert by_item[9][0]["in_interface"] == "eth+" and by_item[9][0]["dports"] == ["80", "443"]
    assert by_item[14][0]["sources"] == ["hand.t-admins"] and by_item[14][0]["dports"] == ["22"]
    assert by_item[11][0]["rate_limit"] == "5/second" and by_item[11][0]["burst"] == 10
    assert by_item[13][0]["log"] is True and by_item[13][0]["reject_with"] == "tcp-reset"
    skipped = {s.line: s for s in result.skipped}
    # the first base chain's drop policy ends what it did not accept: the second one's
    # rule sees only accepted packets, which the rule set does not walk further
    assert skipped[6].reason.startswith("unreachable") and 16 not in by_item
    assert "reached only through nft item 6" in skipped[16].reason
    assert "iptables-nft" in skipped[12].reason and skipped[12].impact == "more restrictive"
    assert "family arp" in skipped[17].reason
    notes = " ".join(n.reason for n in result.notes)
    assert "2 base chains at hook input" in notes


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"nftables": []}', "without a rule"),
        ('{"nftables": {"x": 1}}', "not `nft -j list ruleset`'s"),
    ],
)
def test_json_without_rules_is_refused(text, says):
    with pytest.raises(NotADump, match=says):
        translate_iptables_save(text)


def test_a_named_limit_is_reported_not_misread():
    """`limit name "x"` (nft -j: the name alone) is one bucket for every rule naming it,
    as Rampart's own rate_limit renders it: no rule of the dump has it alone."""
    dump = {
        "nftables": [
            {"metainfo": {"json_schema_version": 1}},
            item("table", family="inet", name="t"),  # 2
            item("limit", family="inet", table="t", name="lim", rate=5, per="second", burst=10),
            item(
                "chain",
                family="inet",
                table="t",
                name="in",
                type="filter",
                hook="input",
                prio=0,
                policy="drop",
            ),  # 4
            rule("in", match(DPORT, 22), {"limit": "lim"}, {"accept": None}),  # 5
        ]
    }
    text = json.dumps(dump)
    result = translate_iptables_save(text, ruleset="named")
    PolicyDocument.from_dict(result.document)
    accounted(result, text)
    skipped = {s.line: s.reason for s in result.skipped}
    assert skipped[5].startswith('limit name "lim" (a named limit object'), skipped[5]
    assert not any(r.get("rate_limit") for r in result.document["rulesets"][0]["rules"])
