"""Analysis is exact: checked on named cases and against brute force through the tracer."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from compiler import Packet, PolicyDocument, Tracer, compile_device
from compiler.analysis import analyse_device, analyse_document, analyse_ruleset

from . import cases


def ruleset_doc(*rules, groups=(), device=None) -> PolicyDocument:
    data = {
        "version": 1,
        "address_groups": list(groups),
        "rulesets": [{"name": "rs", "rules": list(rules)}],
    }
    if device is not None:
        data["devices"] = [{"name": "d", "rulesets": ["rs"], **device}]
    return PolicyDocument.from_dict(data)


def kinds(findings) -> list[tuple[str, list[int]]]:
    return [(f.kind, [r["position"] for r in f.rules]) for f in findings]


def r(action="accept", **fields) -> dict:
    return {"chain": "input", "action": action, **fields}


def test_a_cidr_covers_an_address_inside_it():
    doc = ruleset_doc(r(sources=["198.18.0.0/24"]), r("drop", sources=["198.18.0.7"]))
    (finding,) = analyse_ruleset(doc, "rs", now=cases.NOW)
    assert finding.kind == "shadowed" and [x["position"] for x in finding.rules] == [2, 1]
    assert "rs rule 1" in finding.message and "(accept)" in finding.message


def test_same_action_cover_is_redundant_not_shadowed():
    doc = ruleset_doc(r(sources=["198.18.0.0/24"]), r(sources=["198.18.0.7"]))
    assert kinds(analyse_ruleset(doc, "rs", now=cases.NOW)) == [("redundant", [2, 1])]


def test_cover_by_a_union_of_earlier_rules():
    doc = ruleset_doc(
        r(sources=["198.18.0.0/25"]),
        r("reject", sources=["198.18.0.128/25"]),
        r("drop", sources=["198.18.0.0/24"], protocol="tcp", dports=["80"]),
        r("drop", sources=["198.18.0.0/23"], protocol="tcp", dports=["80"]),
    )
    assert kinds(analyse_ruleset(doc, "rs", now=cases.NOW)) == [("shadowed", [3, 1, 2])]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (
            {"protocol": "tcp", "dports": ["1000-2000"]},
            {"protocol": "tcp", "dports": ["1500"]},
            True,
        ),
        (
            {"protocol": "tcp", "dports": ["1000-2000"]},
            {"protocol": "udp", "dports": ["1500"]},
            False,
        ),
        (
            {"protocol": "tcp", "dports": ["1000-1499", "1501-2000"]},
            {"protocol": "tcp", "dports": ["1500"]},
            False,
        ),
        ({}, {"protocol": "udp", "dports": ["53"]}, True),
        ({"in_interface": "eth+"}, {"in_interface": "eth0"}, True),
        ({"in_interface": "eth0"}, {"in_interface": "eth+"}, False),
        ({"sources": ["198.18.0.0/24"], "sources_negate": True}, {"sources": ["198.19.0.1"]}, True),
        ({"sources": ["198.18.0.0/24"], "sources_negate": True}, {"sources": ["198.18.0.1"]}, None),
        ({"states": ["new"]}, {"states": ["new", "untracked"]}, False),
        ({"rate_limit": "5/second"}, {}, False),
        ({"sources": ["198.18.0.0/24"]}, {"sources": ["2001:2::1"]}, False),
        ({"sources": ["198.18.4.0-198.18.4.255"]}, {"sources": ["198.18.4.128/26"]}, True),
    ],
)
def test_shadowing_in_each_dimension(first, second, expected):
    doc = ruleset_doc(r(**first), r("drop", **second))
    found = kinds(analyse_ruleset(doc, "rs", now=cases.NOW))
    if expected is None:
        assert found == [("never_matches", [2])] or found == []
    else:
        assert (("shadowed", [2, 1]) in found) is expected, found


def test_never_matching_rules_and_empty_groups():
    doc = ruleset_doc(
        r(sources=["nobody"]),
        r(sources=["nobody"], sources_negate=True),
        groups=[{"name": "nobody", "members": []}],
    )
    findings = analyse_ruleset(doc, "rs", now=cases.NOW)
    assert ("never_matches", [1]) in kinds(findings)
    assert ("empty_group", []) in kinds(findings)
    assert [f.objects for f in findings if f.kind == "empty_group"] == [["nobody"]]


def test_later_rules_make_an_earlier_one_redundant_only_with_the_same_verdict():
    doc = ruleset_doc(r("drop", sources=["198.18.0.7"]), r("drop", sources=["198.18.0.0/24"]))
    assert kinds(analyse_ruleset(doc, "rs", now=cases.NOW)) == [("redundant", [1])]
    doc = ruleset_doc(r("drop", sources=["198.18.0.7"]), r(sources=["198.18.0.0/24"]))
    assert analyse_ruleset(doc, "rs", now=cases.NOW) == []


def test_device_view_knows_the_fixed_steps_and_the_default():
    doc = ruleset_doc(
        r("drop", sources=["198.18.0.1"], protocol="tcp", dports=["22"]),
        r(states=["established"]),
        r("drop", protocol="udp"),
        device={"management_sources": ["198.18.0.0/24"]},
    )
    findings = analyse_device(doc, "d", now=cases.NOW)
    found = {f.rules[0]["position"]: f for f in findings}
    assert found[1].kind == "shadowed" and "anti-lockout" in found[1].message
    assert found[2].kind == "redundant" and "conntrack" in found[2].message
    assert found[3].kind == "redundant" and "default policy" in found[3].message
    assert analyse_ruleset(doc, "rs", now=cases.NOW) == []


def test_unused_objects_are_reported():
    data = cases.example()
    data["services"].append({"name": "gopher", "protocol": "tcp", "ports": ["70"]})
    found = analyse_document(PolicyDocument.from_dict(data), now=cases.NOW)
    assert {tuple(f.objects) for f in found if f.kind == "unused"} >= {("gopher",), ("empty",)}


# ---- brute force ---------------------------------------------------------------------------
# A small universe holding a representative of every class the rules can tell apart, so
# "some packet" and "every packet" can be checked by enumeration through the tracer.

NETS = ["198.18.0.0/30", "198.18.0.1", "198.18.0.2", "198.18.0.2-198.18.0.3"]
HOSTS = ["198.18.0.0", "198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.9"]
PORT_SETS = [["80"], ["81"], ["80-81"], ["82", "80"]]
UNIVERSE = [
    dict(
        zip(
            ("source", "destination", "protocol", "dport", "state", "in_interface"),
            combo,
            strict=True,
        )
    )
    for combo in itertools.product(
        HOSTS,
        ["198.18.0.1", "198.18.0.9"],
        ["tcp", "udp"],
        ["80", "81", "82", "9"],
        ["new", "established", "related", "invalid", "untracked"],
        ["eth0", "eth1", "lo", "x0"],
    )
]
# ICMP in every state and on every interface: a rule for any protocol can alone decide
# the ICMP packets that tcp and udp rules before it leave (an established ping reply).
UNIVERSE += [
    dict(zip(("source", "destination", "protocol", "state", "in_interface"), combo, strict=True))
    for combo in itertools.product(
        HOSTS,
        ["198.18.0.1", "198.18.0.9"],
        ["icmp"],
        ["new", "established", "related", "invalid", "untracked"],
        ["eth0", "eth1", "lo", "x0"],
    )
]
# A rule without addresses applies to IPv6 too: the universe must hold IPv6 packets, or a
# rule that alone decides them would look removable.
UNIVERSE += [
    dict(
        zip(
            ("source", "destination", "protocol", "dport", "state", "in_interface"),
            combo,
            strict=True,
        )
    )
    for combo in itertools.product(
        ["2001:2::1"],
        ["2001:2::9"],
        ["tcp", "udp"],
        ["80", "81", "9"],
        ["new", "established", "invalid"],
        ["eth0", "x0"],
    )
]
PACKETS = [Packet.from_params(p) for p in UNIVERSE]


@st.composite
def small_policy(draw):
    rules = []
    for i in range(draw(st.integers(1, 6))):
        rule = {
            "id": str(uuid.UUID(int=i + 1)),
            "chain": "input",
            "action": draw(st.sampled_from(["accept", "drop", "reject"])),
        }
        if draw(st.booleans()):
            rule["sources"] = draw(st.lists(st.sampled_from(NETS), min_size=1, max_size=2))
            rule["sources_negate"] = draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            rule["destinations"] = ["198.18.0.1"]
        proto = draw(st.sampled_from(["any", "tcp", "udp"]))
        rule["protocol"] = proto
        if proto != "any" and draw(st.booleans()):
            rule["dports"] = draw(st.sampled_from(PORT_SETS))
        if draw(st.integers(0, 3)) == 0:
            rule["in_interface"] = draw(st.sampled_from(["eth0", "eth+"]))
        if draw(st.integers(0, 3)) == 0:
            rule["states"] = draw(st.sampled_from([["new"], ["established", "invalid"]]))
        rules.append(rule)
    device = {
        "stateful": draw(st.booleans()),
        "allow_loopback": draw(st.booleans()),
        "default_policy": {"input": draw(st.sampled_from(["accept", "drop"]))},
    }
    if draw(st.booleans()):
        device["management_sources"] = ["198.18.0.2"]
        device["agent_port"] = 81
    return rules, device


def verdicts(rules, device) -> list[tuple[str, str | None]]:
    tracer = Tracer(compile_device(ruleset_doc(*rules, device=device), "d", now=cases.NOW).program)
    return [(res.verdict, res.rule_id) for res in (tracer.trace(p) for p in PACKETS)]


IPV6_ONLY_DECIDER = (  # rule 1 alone decides new IPv6 packets; rules 2 and 4 cover it for IPv4 only
    [
        {
            "id": str(uuid.UUID(int=1)),
            "chain": "input",
            "action": "drop",
            "protocol": "any",
            "states": ["new"],
        },
        {
            "id": str(uuid.UUID(int=2)),
            "chain": "input",
            "action": "drop",
            "sources": ["198.18.0.0/30"],
            "protocol": "any",
            "states": ["new"],
        },
        {
            "id": str(uuid.UUID(int=3)),
            "chain": "input",
            "action": "accept",
            "destinations": ["198.18.0.1"],
            "protocol": "any",
            "in_interface": "eth0",
            "states": ["established", "invalid"],
        },
        {
            "id": str(uuid.UUID(int=4)),
            "chain": "input",
            "action": "drop",
            "sources": ["198.18.0.0/30"],
            "sources_negate": True,
            "protocol": "any",
        },
    ],
    {"stateful": False, "allow_loopback": False, "default_policy": {"input": "accept"}},
)


ICMP_ONLY_DECIDER = (  # rule 6 alone decides non-new ICMP to .1 on eth0 (4: tcp, 5: udp)
    [
        {
            "id": str(uuid.UUID(int=i)),
            "chain": "input",
            "action": "accept",
            "destinations": ["198.18.0.1"],
            "protocol": "any",
            "in_interface": "eth0",
            "states": ["new"],
        }
        for i in (1, 2, 3)
    ]
    + [
        {
            "id": str(uuid.UUID(int=4)),
            "chain": "input",
            "action": "accept",
            "destinations": ["198.18.0.1"],
            "protocol": "tcp",
            "in_interface": "eth0",
        },
        {
            "id": str(uuid.UUID(int=5)),
            "chain": "input",
            "action": "accept",
            "destinations": ["198.18.0.1"],
            "protocol": "udp",
        },
        {
            "id": str(uuid.UUID(int=6)),
            "chain": "input",
            "action": "drop",
            "destinations": ["198.18.0.1"],
            "protocol": "any",
            "in_interface": "eth0",
        },
    ],
    {"stateful": False, "allow_loopback": False, "default_policy": {"input": "accept"}},
)


MGMT_PACKETS = [
    p for p in PACKETS if str(p.source) == "198.18.0.2" and p.protocol == "tcp" and p.dport == 81
]


def assert_management_findings(rules, device, findings) -> None:
    """A drop/reject rule is said to touch management traffic (a `management` finding, or a
    shadow finding naming the anti-lockout) exactly when, alone on a device without
    management sources, it decides some management packet of the universe; an accept rule
    never gets a `management` finding."""
    named = {
        f.rules[0]["id"]: f.kind
        for f in findings
        if f.rules and (f.kind == "management" or any(r["id"] == "sys:mgmt" for r in f.rules[1:]))
    }
    open_device = {"stateful": False, "allow_loopback": False, "default_policy": {}}
    for rule in rules:
        if rule["action"] == "accept":
            assert named.get(rule["id"]) != "management", rule
            continue
        touches = False
        if device.get("management_sources"):
            program = compile_device(
                ruleset_doc(rule, device=open_device), "d", now=cases.NOW
            ).program
            tracer = Tracer(program)
            touches = any(tracer.trace(p).rule_id == rule["id"] for p in MGMT_PACKETS)
        assert (rule["id"] in named) == touches, (rule, touches)


@given(small_policy())
@example(IPV6_ONLY_DECIDER)
@example(ICMP_ONLY_DECIDER)
@settings(max_examples=50, deadline=None)
def test_analysis_agrees_with_brute_force(policy):
    rules, device = policy
    findings = analyse_device(ruleset_doc(*rules, device=device), "d", now=cases.NOW)
    flagged = {f.rules[0]["id"]: f.kind for f in findings if f.rules and f.kind != "management"}
    assert_management_findings(rules, device, findings)
    base = verdicts(rules, device)
    for index, rule in enumerate(rules):
        decides = any(rid == rule["id"] for _, rid in base)
        without = verdicts(rules[:index] + rules[index + 1 :], device)
        removable = [v for v, _ in without] == [v for v, _ in base]
        kind = flagged.get(rule["id"])
        covered = kind in ("shadowed", "never_matches") or (kind == "redundant" and not decides)
        assert decides != covered or kind == "redundant", (index, kind, decides)
        if kind == "redundant":
            assert removable, (index, kind)
        if kind is None:
            assert decides and not removable, (index, decides, removable)


def test_rules_that_would_touch_management_traffic_are_named():
    """A drop that partly covers management traffic (overridden by the anti-lockout) and a
    DNAT of the agent port (exempted from NAT) are findings naming the rule; an accept, a
    DNAT of another port and a masquerade are not."""
    data = {
        "version": 1,
        "rulesets": [
            {
                "name": "rs",
                "rules": [
                    r("drop", sources=["198.18.0.0/16"], protocol="tcp"),
                    r("accept", sources=["198.18.0.1"], protocol="tcp", dports=["22"]),
                    r("reject", sources=["198.18.9.9"], protocol="tcp", dports=["22"]),
                ],
                "nat": [
                    {"type": "dnat", "protocol": "tcp", "dports": ["8745"], "to": "198.18.5.5"},
                    {"type": "dnat", "protocol": "tcp", "dports": ["80"], "to": "198.18.5.5"},
                    {"type": "masquerade", "out_interface": "eth0"},
                ],
            }
        ],
        "devices": [{"name": "d", "rulesets": ["rs"], "management_sources": ["198.18.0.1"]}],
    }
    doc = PolicyDocument.from_dict(data)
    for findings in (
        analyse_device(doc, "d", now=cases.NOW),
        analyse_document(doc, now=cases.NOW),
    ):
        mgmt = [f for f in findings if f.kind == "management"]
        assert [(f.rules[0].get("table", "filter"), f.rules[0]["position"]) for f in mgmt] == [
            ("filter", 1),
            ("nat", 1),
        ]
        assert "anti-lockout" in mgmt[0].message and "device d" in mgmt[0].message
        assert "exempt from Rampart's NAT" in mgmt[1].message and "8745" in mgmt[1].message
    data["devices"][0]["management_sources"] = []
    assert not [
        f
        for f in analyse_device(PolicyDocument.from_dict(data), "d", now=cases.NOW)
        if f.kind == "management"
    ]
