"""Zones: named interface lists used for in/out by rules and NAT rules; parsed, validated,
lowered to one kernel rule per interface in the rule's place, traced, analysed, and the
interfaces a host lacks reported against its facts."""

from __future__ import annotations

import random

import pytest

from compiler import Packet, PolicyDocument, Tracer, analyse_device, compile_device
from compiler import nets as N
from compiler.analysis import analyse_ruleset
from compiler.errors import DocumentError, PacketError, UnknownName
from compiler.interfaces import interface_findings
from compiler.lower.tags import rule_tag
from compiler.tracer_zones import representative, trace_zones
from compiler.validate import nat_errors, rule_errors

from . import cases

ZONES = [{"name": "lan", "interfaces": ["eth1", "veth+"]}, {"name": "wan", "interfaces": ["eth0"]}]


def doc(*rules: dict, nat: list | None = None, zones: list | None = None) -> dict:
    rs: dict = {"name": "rs", "rules": list(rules)}
    if nat:
        rs["nat"] = nat
    return {
        "version": 1,
        "zones": ZONES if zones is None else zones,
        "rulesets": [rs],
        "devices": [{"name": "d", "rulesets": ["rs"]}],
    }


def compiled(*rules: dict, **kw):
    return compile_device(PolicyDocument.from_dict(doc(*rules, **kw)), "d", now=cases.NOW)


def errors(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(DocumentError) as exc:
        PolicyDocument.from_dict(data)
    return [(e.path, e.message) for e in exc.value.errors]


def body(text: str, chain: str = "RPT-I-rs") -> list[str]:
    """The rules of `chain` (a rule set's chain: its name without the hash suffix),
    without their comments."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if parts[0] == "-A" and (parts[1] == chain or parts[1].startswith(f"{chain}-")):
            rest = line.split(" -m comment ")[0].split(" ", 2)[2]
            out.append(f"-A {chain} {rest} " + line.rsplit('" ', 1)[-1])
    return out


def accept(**kw) -> dict:
    return {"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["22"], **kw}


def test_round_trip_and_written_form():
    data = doc(accept(in_zone="lan"), nat=[{"type": "masquerade", "out_zone": "wan"}])
    parsed = PolicyDocument.from_dict(data)
    out = parsed.to_dict()
    assert out["zones"] == ZONES
    assert out["rulesets"][0]["rules"][0]["in_zone"] == "lan"
    assert out["rulesets"][0]["nat"][0]["out_zone"] == "wan"
    assert PolicyDocument.from_dict(out) == parsed


@pytest.mark.parametrize(
    ("iface", "message"),
    [
        ("a" * 16, "at most 15 characters"),
        ("abcdefghijklmn++", "at most 15 characters"),
        ("eth 0", "invalid interface name"),
        ("eth0/1", "invalid interface name"),
        ("..", "invalid interface name"),
        ("+", "invalid interface name"),
    ],
)
def test_interface_names_checked(iface, message):
    found = errors(doc(zones=[{"name": "z", "interfaces": ["eth0", iface]}]))
    assert [p for p, _ in found] == ["zones[z].interfaces[1]"]
    assert message in found[0][1]


def test_longest_names_and_wildcards_accepted():
    zone = {"name": "z", "interfaces": ["a" * 15, "b" * 14 + "+", "br-lan.10", "wg0@x"]}
    assert PolicyDocument.from_dict(doc(zones=[zone])).zones[0].interfaces == tuple(
        zone["interfaces"]
    )


def test_zone_problems():
    found = errors(
        doc(
            zones=[
                {"name": "a", "interfaces": []},
                {"name": "b", "interfaces": ["eth0", "eth0"]},
                {"name": "c"},
                {"name": "d", "interfaces": ["eth0"], "subnets": ["198.18.0.0/24"]},
            ]
        )
    )
    assert ("zones[a].interfaces", "a zone needs at least one interface") in found
    assert ("zones[b].interfaces[1]", "interface 'eth0' is listed twice") in found
    assert ("zones[c].interfaces", "is required") in found
    assert ("zones[d].subnets", "unknown key") in found


def test_rule_zone_problems():
    data = doc(
        accept(in_zone="nosuch"),
        accept(in_zone="lan", in_interface="eth9"),
        {"chain": "input", "action": "accept", "out_zone": "wan"},
    )
    with pytest.raises(DocumentError) as exc:
        PolicyDocument.from_dict(data)
    found = [(e.path, e.message) for e in exc.value.errors]
    assert found == [
        ("rulesets[rs].rules[0].in_zone", "unknown zone 'nosuch'"),
        ("rulesets[rs].rules[1].in_zone", "give either in_interface or in_zone, not both"),
        ("rulesets[rs].rules[2].out_zone", "out_zone cannot be matched in chain input"),
    ]
    assert isinstance(exc.value.errors[0], UnknownName)
    assert exc.value.errors[0].name == "nosuch"


def test_single_rule_validation_takes_zone_names():
    assert rule_errors(accept(in_zone="dmz")) == {}
    assert rule_errors(accept(in_zone="not a name")) == {"in_zone": ["unknown zone 'not a name'"]}
    assert nat_errors({"type": "masquerade", "out_zone": "wan"}) == {}
    assert nat_errors({"type": "masquerade", "in_zone": "wan"}) == {
        "in_zone": ["in_zone cannot be matched in chain postrouting"]
    }


def test_one_kernel_rule_per_interface_in_the_rules_place():
    bundle = compiled(
        accept(dports=["21"]),
        accept(in_zone="lan", sources=["198.18.1.0/24"]),
        accept(dports=["23"]),
    )
    rules = body(bundle.iptables_v4)
    assert [r.split(" -j ")[0] for r in rules] == [
        "-A RPT-I-rs -p tcp -m tcp --dport 21",
        "-A RPT-I-rs -s 198.18.1.0/24 -i eth1 -p tcp -m tcp --dport 22",
        "-A RPT-I-rs -s 198.18.1.0/24 -i veth+ -p tcp -m tcp --dport 22",
        "-A RPT-I-rs -p tcp -m tcp --dport 23",
    ]
    # both copies carry the rule's one tag (hits and drift stay per policy rule)
    tags = [line.split('"')[1] for line in bundle.iptables_v4.splitlines() if "--dport 22" in line]
    assert len(tags) == 2 and tags[0] == tags[1]


def test_both_sides_pair_every_interface():
    rule = {"chain": "forward", "action": "accept", "in_zone": "lan", "out_zone": "wan"}
    rules = body(compiled(rule).iptables_v6, "RPT-F-rs")
    assert [r.split(" -j ")[0] for r in rules] == [
        "-A RPT-F-rs -i eth1 -o eth0",
        "-A RPT-F-rs -i veth+ -o eth0",
    ]


def test_tag_covers_the_zone_interfaces():
    rule = accept(id="0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1", in_zone="lan")
    before = compiled(rule).iptables_v4
    after = compiled(rule, zones=[{"name": "lan", "interfaces": ["eth1"]}]).iptables_v4
    tag = [line.split('"')[1] for line in before.splitlines() if "--dport 22" in line][0]
    assert tag not in after
    # a rule without zones keeps the tag it always had
    plain = PolicyDocument.from_dict(doc(accept(in_interface="eth1"))).rulesets[0].rules[0]
    assert rule_tag("x", plain) == rule_tag("x", plain._replace(in_zone=None))


def test_nat_rule_with_a_zone():
    nat = [{"type": "masquerade", "out_zone": "lan", "sources": ["198.18.0.0/24"]}]
    rules = body(compiled(nat=nat).iptables_v4, "RPT-POSTROUTING")
    assert [r.split(" -j ")[0] for r in rules] == [
        "-A RPT-POSTROUTING -s 198.18.0.0/24 -o eth1",
        "-A RPT-POSTROUTING -s 198.18.0.0/24 -o veth+",
    ]


def trace(bundle, in_interface: str) -> dict:
    packet = Packet.from_params(
        {
            "chain": "input",
            "protocol": "tcp",
            "source": "198.18.1.5",
            "destination": "198.18.0.1",
            "dport": "22",
            "in_interface": in_interface,
        }
    )
    return Tracer(bundle.program).trace(packet).to_dict()


def test_tracer_matches_zone_interfaces_and_names_the_zones():
    bundle = compiled(accept(in_zone="lan", sources=["198.18.1.0/24"]))
    for iface in ("eth1", "veth7"):
        result = trace(bundle, iface)
        assert result["verdict"] == "accept"
        assert result["zones"] == {"in_interface": ["lan"]}
    outside = trace(bundle, "eth0")
    assert outside["verdict"] == "drop"
    assert outside["zones"] == {"in_interface": ["wan"]}
    assert "zones" not in trace(bundle, "eth5")


def test_analysis_sees_zone_interfaces():
    data = doc(accept(in_zone="lan"), accept(in_interface="veth3"), accept(in_interface="eth0"))
    findings = analyse_ruleset(PolicyDocument.from_dict(data), "rs", now=cases.NOW)
    shadowed = [f for f in findings if f.kind in ("shadowed", "redundant")]
    assert [f.rules[0]["position"] for f in shadowed] == [2]


def test_unknown_interfaces_warned_against_the_hosts_facts():
    data = doc(
        accept(in_zone="lan"),
        accept(in_interface="nosuchif0"),
        nat=[{"type": "masquerade", "out_zone": "wan"}],
    )
    parsed = PolicyDocument.from_dict(data)
    found = interface_findings(parsed, "d", ["eth0", "eth1", "lo"])
    assert [(f.kind, f.severity, f.objects) for f in found] == [
        ("unknown_interface", "warning", ["lan"]),
        ("unknown_interface", "warning", []),
    ]
    assert "'veth+' (zone lan)" in found[0].message
    assert [r["position"] for r in found[1].rules] == [2]
    assert interface_findings(parsed, "d", ["eth0", "eth1", "veth0", "nosuchif0"]) == []
    kinds = [f.kind for f in analyse_device(parsed, "d", now=cases.NOW, interfaces=["eth0"])]
    assert kinds.count("unknown_interface") == 3
    assert "unknown_interface" not in [f.kind for f in analyse_device(parsed, "d", now=cases.NOW)]


NET_ZONES = [
    {"name": "lan", "interfaces": ["eth1", "veth+"], "networks": ["198.18.1.0/24", "2001:2::/64"]},
    {"name": "wan", "interfaces": ["eth0"], "networks": ["198.18.200.0/24"]},
]


def test_zone_networks_round_trip_and_problems():
    data = doc(accept(in_zone="lan"), zones=NET_ZONES)
    parsed = PolicyDocument.from_dict(data)
    assert parsed.zones[0].networks == ("198.18.1.0/24", "2001:2::/64")
    assert PolicyDocument.from_dict(parsed.to_dict()).to_dict() == parsed.to_dict()
    assert parsed.to_dict()["zones"][0]["networks"] == ["198.18.1.0/24", "2001:2::/64"]
    # a zone without networks is written as before
    assert "networks" not in PolicyDocument.from_dict(doc()).to_dict()["zones"][0]
    bad = [
        {"name": "a", "interfaces": ["eth1"], "networks": ["198.18.1.0/3x"]},
        {"name": "b", "interfaces": ["eth2"], "networks": ["198.18.1.1", "198.18.1.1"]},
        {"name": "c", "interfaces": ["eth3"], "networks": []},
    ]
    found = errors(doc(zones=bad))
    assert [p for p, _ in found] == [
        "zones[a].networks[0]",
        "zones[b].networks[1]",
        "zones[c].networks",
    ]


def test_in_zone_networks_narrow_the_sources_out_zone_networks_the_destinations():
    rule = {"chain": "forward", "action": "accept", "in_zone": "lan", "out_zone": "wan"}
    v4 = body(compiled(rule, zones=NET_ZONES).iptables_v4, "RPT-F-rs")
    assert [r.split(" -j ")[0] for r in v4] == [
        "-A RPT-F-rs -s 198.18.1.0/24 -d 198.18.200.0/24 -i eth1 -o eth0",
        "-A RPT-F-rs -s 198.18.1.0/24 -d 198.18.200.0/24 -i veth+ -o eth0",
    ]
    # wan has no IPv6 network: the rule matches no IPv6 packet
    assert body(compiled(rule, zones=NET_ZONES).iptables_v6, "RPT-F-rs") == []
    # the rule's own sources are intersected with the zone's networks
    narrowed = accept(in_zone="lan", sources=["198.18.0.0/16"])
    v4 = body(compiled(narrowed, zones=NET_ZONES).iptables_v4)
    assert {r.split(" -i ")[0] for r in v4} == {"-A RPT-I-rs -s 198.18.1.0/24"}
    # negated sources: the zone's networks minus them
    negated = accept(in_zone="lan", sources=["198.18.1.0/25"], sources_negate=True)
    v4 = body(compiled(negated, zones=NET_ZONES).iptables_v4)
    assert {r.split(" -i ")[0] for r in v4} == {"-A RPT-I-rs -s 198.18.1.128/25"}
    # outside the zone's networks: nothing left, and the analysis says so
    outside = accept(in_zone="lan", sources=["198.18.9.0/24"])
    assert body(compiled(outside, zones=NET_ZONES).iptables_v4) == []
    parsed = PolicyDocument.from_dict(doc(outside, zones=NET_ZONES))
    assert [f.kind for f in analyse_ruleset(parsed, "rs", now=cases.NOW)] == ["never_matches"]


def test_tracer_and_analysis_agree_on_zone_networks():
    bundle = compiled(accept(in_zone="lan"), zones=NET_ZONES)
    assert trace(bundle, "eth1")["verdict"] == "accept"  # 198.18.1.5 is in lan's networks
    packet = Packet.from_params(
        {
            "chain": "input",
            "protocol": "tcp",
            "source": "198.18.2.5",
            "destination": "198.18.0.1",
            "dport": "22",
            "in_interface": "eth1",
        }
    )
    assert Tracer(bundle.program).trace(packet).verdict == "drop"
    # a later rule for lan's networks only on lan's interfaces is shadowed; one for other
    # sources is not
    data = doc(
        accept(in_zone="lan"),
        accept(in_interface="eth1", sources=["198.18.1.7"]),
        accept(in_interface="eth1", sources=["198.18.2.7"]),
        zones=NET_ZONES,
    )
    findings = analyse_ruleset(PolicyDocument.from_dict(data), "rs", now=cases.NOW)
    assert [f.rules[0]["position"] for f in findings if f.kind == "redundant"] == [2]


def test_tag_covers_zone_networks_and_nat_is_narrowed_too():
    rule = accept(id="0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1", in_zone="lan")
    plain = compiled(rule).iptables_v4
    with_nets = compiled(rule, zones=NET_ZONES).iptables_v4
    tags = {line.split('"')[1] for line in plain.splitlines() if "--dport 22" in line}
    assert tags and not any(t in with_nets for t in tags)
    nat = [{"type": "masquerade", "out_zone": "wan"}]
    rules = body(compiled(nat=nat, zones=NET_ZONES).iptables_v4, "RPT-POSTROUTING")
    assert [r.split(" -j ")[0] for r in rules] == ["-A RPT-POSTROUTING -d 198.18.200.0/24 -o eth0"]


def test_network_intersection_and_difference_by_brute_force():
    rng = random.Random(21)
    base = 0xC6120000  # 198.18.0.0: every block inside 198.18.0.0/24

    def blocks(k: int) -> tuple:
        out = []
        for _ in range(k):
            plen = rng.randint(26, 32)
            first = base + (rng.randrange(256) >> (32 - plen) << (32 - plen))
            out.append(N.Net(4, first, plen))
        return N.collapse(out)

    def addresses(nets) -> set[int]:
        return {a for n in nets for a in range(n.first, n.last + 1)}

    for _ in range(200):
        a, b = blocks(rng.randint(1, 4)), blocks(rng.randint(1, 4))
        assert addresses(N.intersect(a, b)) == addresses(a) & addresses(b)
        assert addresses(N.subtract(a, b)) == addresses(a) - addresses(b)


def test_trace_by_zone_one_trace_per_interface_and_mixed():
    bundle = compiled(accept(in_interface="eth1"))
    params = {
        "chain": "input",
        "protocol": "tcp",
        "source": "198.18.1.5",
        "destination": "198.18.0.1",
        "dport": "22",
    }
    tracer = Tracer(bundle.program)
    body = trace_zones(tracer, {**params, "in_zone": "lan"}, bundle.program.zones)
    assert [(t["in_interface"], t["verdict"]) for t in body["traces"]] == [
        ("eth1", "accept"),
        ("veth0", "drop"),
    ]
    assert body["verdict"] == "mixed"
    assert trace_zones(tracer, {**params, "in_zone": "wan"}, bundle.program.zones)["verdict"] == (
        "drop"
    )
    assert representative("x" * 15 + "+") == "x" * 15
    with pytest.raises(PacketError) as exc:
        trace_zones(tracer, {**params, "in_zone": "nope", "dport": "x"}, bundle.program.zones)
    assert {e.path for e in exc.value.errors} == {"in_zone", "dport"}
