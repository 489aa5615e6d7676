"""The one parser of the policy document: every problem named with its path."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import DocumentError, PolicyDocument

from . import cases

RID = "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1"


def errors_of(data: dict) -> list[tuple[str, str, str | None]]:
    with pytest.raises(DocumentError) as info:
        PolicyDocument.from_dict(data)
    return [(e.path, e.message, e.rule_id) for e in info.value.errors]


def with_rule(**fields) -> dict:
    data = cases.example()
    data["rulesets"][0]["rules"][0].update(fields)
    return data


def test_example_parses_and_round_trips():
    doc = PolicyDocument.from_dict(cases.example())
    again = PolicyDocument.from_dict(doc.to_dict())
    assert again == doc
    assert again.to_dict() == doc.to_dict()
    # and through YAML text, as export/import does
    assert PolicyDocument.from_dict(yaml.safe_load(yaml.safe_dump(doc.to_dict()))) == doc


@pytest.mark.parametrize("case", sorted(cases.CASES))
def test_every_case_round_trips(case):
    doc = PolicyDocument.from_dict(cases.CASES[case][0]())
    assert PolicyDocument.from_dict(doc.to_dict()).to_dict() == doc.to_dict()


BAD_RULES = [
    ({"colour": "red"}, "rulesets[web-baseline].rules[0].colour", "unknown key"),
    (
        {"dports": ["70000"], "services": None, "protocol": "udp"},
        "rulesets[web-baseline].rules[0].dports[0]",
        "port 70000 is out of range",
    ),
    (
        {"services": None, "protocol": "icmp", "dports": ["80"]},
        "rulesets[web-baseline].rules[0].dports",
        "ports need protocol tcp or udp",
    ),
    (
        {"sources": ["nowhere"]},
        "rulesets[web-baseline].rules[0].sources[0]",
        "unknown reference 'nowhere'",
    ),
    (
        {"services": ["nope"]},
        "rulesets[web-baseline].rules[0].services[0]",
        "unknown service 'nope'",
    ),
    (
        {"sources": ["198.18.0.1"], "destinations": ["2001:2::1"]},
        "rulesets[web-baseline].rules[0].destinations",
        "IPv4 only and destinations IPv6",
    ),
    (
        {"sources": ["2001:2::1"], "destinations": [], "services": ["ping"]},
        "rulesets[web-baseline].rules[0].services",
        "IPv6 only but its protocol is for IPv4",
    ),
    (
        {"chain": "output", "in_interface": "eth0"},
        "rulesets[web-baseline].rules[0].in_interface",
        "cannot be matched in chain output",
    ),
    ({"chain": "sideways"}, "rulesets[web-baseline].rules[0].chain", "unknown chain"),
    ({"protocol": "tcp"}, "rulesets[web-baseline].rules[0].services", "either services or"),
    ({"rate_limit": "fast"}, "rulesets[web-baseline].rules[0].rate_limit", "invalid rate"),
    (
        {"sources": ["198.18.0.1/16"]},
        "rulesets[web-baseline].rules[0].sources[0]",
        "unknown reference",
    ),
    (
        {"expires_at": "next tuesday"},
        "rulesets[web-baseline].rules[0].expires_at",
        "invalid date/time",
    ),
    ({"log_prefix": "x" * 40}, "rulesets[web-baseline].rules[0].log_prefix", "at most 29"),
    ({"states": ["new", "sleepy"]}, "rulesets[web-baseline].rules[0].states[1]", "unknown state"),
]


@pytest.mark.parametrize(("fields", "path", "text"), BAD_RULES)
def test_rule_errors_name_the_rule_and_field(fields, path, text):
    found = errors_of(with_rule(**fields))
    assert any(p == path and text in m and rid == RID for p, m, rid in found), found


def test_udp_70000_in_a_service_is_refused():
    data = cases.example()
    data["services"][2]["ports"] = ["70000"]
    assert ("services[dns].ports[0]", "port 70000 is out of range (1-65535)", None) in errors_of(
        data
    )


def test_duplicate_names_cycles_and_unknown_members():
    data = cases.example()
    data["addresses"].append({"name": "web-1", "value": "198.18.1.99"})
    data["address_groups"] += [
        {"name": "a", "members": ["b"]},
        {"name": "b", "members": ["a"]},
        {"name": "c", "members": ["ghost"]},
    ]
    data["service_groups"].append({"name": "loop", "members": ["loop"]})
    found = errors_of(data)
    paths = {p for p, _, _ in found}
    assert "addresses[web-1]" in paths
    assert any("address group cycle" in m for _, m, _ in found)
    assert any("service group cycle" in m for _, m, _ in found)
    assert "address_groups[c].members[0]" in paths


def test_nat_in_the_wrong_chain_and_family_mix():
    data = cases.example()
    data["rulesets"][0]["nat"] += [
        {"type": "masquerade", "chain": "prerouting"},
        {"type": "dnat", "out_interface": "eth0", "to": "198.18.1.1"},
        {"type": "dnat", "sources": ["2001:2::1"], "to": "198.18.1.1"},
        {"type": "snat", "protocol": "icmp", "to": "198.18.1.1:80"},
    ]
    found = errors_of(data)
    assert (
        "rulesets[web-baseline].nat[2].chain",
        "a masquerade rule belongs in chain postrouting, not 'prerouting'",
        None,
    ) in found
    assert any(p == "rulesets[web-baseline].nat[3].out_interface" for p, _, _ in found)
    assert any(
        p == "rulesets[web-baseline].nat[4].to" and "mixes IPv4 and IPv6" in m for p, m, _ in found
    )
    assert any(p == "rulesets[web-baseline].nat[5].to" for p, _, _ in found)


def test_unknown_top_level_key_and_duplicate_rule_ids():
    data = cases.example()
    data["firewalls"] = []
    rules = data["rulesets"][0]["rules"]
    rules[1]["id"] = rules[0]["id"]
    found = errors_of(data)
    assert ("firewalls", "unknown key", None) in found
    assert any(p == "rulesets[web-baseline].rules[1].id" and "duplicate" in m for p, m, _ in found)


def test_device_references_are_checked():
    data = cases.example()
    data["devices"][0].update(
        groups=["nope"], rulesets=["missing"], agent_port=0, default_policy={"input": "maybe"}
    )
    paths = {p for p, _, _ in errors_of(data)}
    assert {
        "devices[web-1].groups[0]",
        "devices[web-1].rulesets[0]",
        "devices[web-1].agent_port",
        "devices[web-1].default_policy.input",
    } <= paths


def test_canonical_form_drops_defaults_and_normalises_ports():
    data = {
        "version": 1,
        "rulesets": [
            {
                "name": "r",
                "rules": [
                    {
                        "chain": "input",
                        "action": "accept",
                        "protocol": "tcp",
                        "dports": [80, "8000-8100"],
                        "enabled": True,
                        "log": False,
                        "id": RID.upper(),
                    }
                ],
            }
        ],
    }
    out = PolicyDocument.from_dict(data).to_dict()
    assert out["rulesets"][0]["rules"][0] == {
        "id": RID,
        "chain": "input",
        "action": "accept",
        "protocol": "tcp",
        "dports": ["80", "8000-8100"],
    }


names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
v4 = st.builds(
    lambda a, b, p: f"198.{18 + a % 2}.{b}.0/{p}",
    st.integers(0, 1),
    st.integers(0, 255),
    st.sampled_from([24, 25, 28, 32]),
)
rule_st = st.fixed_dictionaries(
    {
        "chain": st.sampled_from(["input", "output", "forward"]),
        "action": st.sampled_from(["accept", "drop", "reject"]),
    },
    optional={
        "sources": st.lists(v4, max_size=3),
        "protocol": st.just("tcp"),
        "comment": st.text(max_size=20),
        "enabled": st.booleans(),
        "sources_negate": st.booleans(),
        "states": st.lists(st.sampled_from(["new", "established"]), max_size=2),
    },
)


@given(st.lists(rule_st, max_size=8), names)
@settings(max_examples=60, deadline=None)
def test_to_dict_is_a_fixed_point(rules, name):
    data = {"version": 1, "rulesets": [{"name": name, "rules": copy.deepcopy(rules)}]}
    try:
        doc = PolicyDocument.from_dict(data)
    except DocumentError as exc:  # host bits set in a generated CIDR: a real error, keep going
        assert all("host bits" in e.message for e in exc.errors)
        return
    once = doc.to_dict()
    assert PolicyDocument.from_dict(once).to_dict() == once
    assert PolicyDocument.from_dict(once) == doc
