"""Compiler output: golden files, determinism and the ownership conventions the agent
relies on (docs/bundle-format.md), checked on fixed cases and on random policies."""

from __future__ import annotations

import json
import os
import random
import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import CompileError, CompileOptions, DocumentError, PolicyDocument, compile_device

from . import cases
from .cases import compile_case

GOLDEN = Path(__file__).with_name("golden")
BUILTINS = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}
TAG = re.compile(
    r'-m comment --comment "(rpt:(?:jump|sys:[a-z0-9-]+|'
    r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{8}))"'
)


@pytest.mark.parametrize("case", sorted(cases.CASES))
def test_golden(case):
    """Byte-for-byte output; regenerate with RPT_UPDATE_GOLDEN=1 after a deliberate change."""
    got = json.dumps(compile_case(case).to_dict(), indent=1, sort_keys=True) + "\n"
    path = GOLDEN / f"{case}.json"
    if os.environ.get("RPT_UPDATE_GOLDEN"):
        path.write_text(got)
    assert got == path.read_text()


def check_conventions(bundle) -> None:
    """What the agent relies on, whatever the policy."""
    for text in (bundle.iptables_v4, bundle.iptables_v6):
        tables = re.findall(r"^\*(\w+)$", text, re.M)
        assert tables == ["filter", "nat"]
        assert text.count("COMMIT\n") == 2
        for line in text.splitlines():
            if line.startswith(":"):
                name = line[1:].split()[0]
                assert name.startswith("RPT-") and len(name) <= 28, line
            elif line.startswith("-A "):
                chain = line.split()[1]
                match = TAG.search(line)
                assert match, f"rule without an rpt comment: {line}"
                assert len(match.group(1)) <= 256
                if chain in BUILTINS:
                    assert match.group(1) == "rpt:jump" and re.search(r"-j RPT-\S+$", line), line
                else:
                    assert chain.startswith("RPT-")
                for ports in re.findall(r"--[sd]?ports (\S+)", line):
                    slots = sum(2 if ":" in p else 1 for p in ports.split(","))
                    assert slots <= 15, line
    for name, meta in bundle.sets.items():
        assert name.startswith("rpt-") and len(name) <= 31
        assert meta["maxelem"] >= meta["entries"]
        assert (
            f"create {name} hash:net family {meta['family']} hashsize {meta['hashsize']} "
            f"maxelem {meta['maxelem']}" in bundle.ipsets
        )
    chains = bundle.chains
    for fam, text in (("v4", bundle.iptables_v4), ("v6", bundle.iptables_v6)):
        declared = set(re.findall(r"^:(\S+)", text, re.M))
        assert declared == set(chains[fam]["filter"]) | set(chains[fam]["nat"])


@pytest.mark.parametrize("case", sorted(cases.CASES))
def test_conventions_hold_for_every_case(case):
    check_conventions(compile_case(case))


def test_same_input_same_bytes_and_hash_moves_with_content():
    one, two = compile_case("example"), compile_case("example")
    assert one.to_json() == two.to_json()
    data = cases.example()
    data["rulesets"][0]["rules"][0]["action"] = "drop"
    other = compile_device(PolicyDocument.from_dict(data), "web-1", now=cases.NOW)
    assert other.hash != one.hash
    changed = {
        c for c, h in other.chains["v4"]["filter"].items() if one.chains["v4"]["filter"].get(c) != h
    }
    assert changed == {"RPT-I-web-baseline-5e4e2934"}  # only the rule set's chain moved


def test_100k_group_set_is_sized():
    bundle = compile_device(PolicyDocument.from_dict(cases.big_group()), "edge", now=cases.NOW)
    (meta,) = bundle.sets.values()
    assert meta == {
        "family": "inet6",
        "type": "hash:net",
        "entries": 100_000,
        "hashsize": 65536,
        "maxelem": 131072,
    }
    assert bundle.ipsets.count("\nadd ") == 100_000


def test_unknown_device_is_a_compile_error():
    with pytest.raises(CompileError) as info:
        compile_device(PolicyDocument.from_dict(cases.example()), "nope", now=cases.NOW)
    assert info.value.errors[0].path == "devices[nope]"


@given(st.randoms(use_true_random=False))
@settings(max_examples=30, deadline=None)
def test_member_order_does_not_change_the_bundle(rnd: random.Random):
    data = cases.sets_and_ports()
    reference = compile_device(PolicyDocument.from_dict(data), "fw", now=cases.NOW)
    for group in data["address_groups"]:
        rnd.shuffle(group["members"])
    for svc in data["services"]:
        if "ports" in svc:
            rnd.shuffle(svc["ports"])
    shuffled = compile_device(PolicyDocument.from_dict(data), "fw", now=cases.NOW)
    assert shuffled.to_json() == reference.to_json()


# ---- random policies ---------------------------------------------------------------------

ADDRS = [
    "198.18.0.0/24",
    "198.18.0.7",
    "198.18.1.0/25",
    "198.19.255.255",
    "198.18.4.10-198.18.4.40",
    "2001:2::/64",
    "2001:2::5",
    "2001:2:0:1::/64",
]
PORTS = ["22", "80", "443", "1000-2000", "8000", "65535"]


@st.composite
def random_policy(draw):
    groups = [
        {"name": f"g{i}", "members": draw(st.lists(st.sampled_from(ADDRS), max_size=5))}
        for i in range(3)
    ]
    refs = st.lists(st.sampled_from(ADDRS + ["g0", "g1", "g2"]), max_size=3)
    rules = []
    for _ in range(draw(st.integers(0, 12))):
        rule = {
            "chain": draw(st.sampled_from(["input", "output", "forward"])),
            "action": draw(st.sampled_from(["accept", "drop", "reject"])),
            "sources": draw(refs),
            "destinations": draw(refs),
            "sources_negate": draw(st.booleans()),
            "log": draw(st.booleans()),
        }
        proto = draw(st.sampled_from(["any", "tcp", "udp", "icmp", "icmpv6"]))
        rule["protocol"] = proto
        if proto in ("tcp", "udp"):
            rule["dports"] = draw(st.lists(st.sampled_from(PORTS), max_size=20))
            rule["sports"] = draw(st.lists(st.sampled_from(PORTS), max_size=3))
        if draw(st.booleans()):
            rule["expires_at"] = (cases.NOW + timedelta(days=draw(st.integers(-2, 2)))).isoformat()
        rules.append(rule)
    return {
        "version": 1,
        "address_groups": groups,
        "rulesets": [{"name": "r", "rules": rules}],
        "devices": [
            {
                "name": "d",
                "rulesets": ["r"],
                "stateful": draw(st.booleans()),
                "management_sources": draw(st.lists(st.sampled_from(ADDRS), max_size=2)),
                "default_policy": {"input": draw(st.sampled_from(["accept", "drop", "reject"]))},
            }
        ],
    }


def compile_random(data: dict, threshold: int):
    """Compile if the random document is valid (mixed-family rules are rightly refused)."""
    try:
        doc = PolicyDocument.from_dict(data)
    except DocumentError as exc:
        assert all("only" in e.message for e in exc.errors), exc.errors
        return None
    return compile_device(
        doc, "d", options=CompileOptions(ipset_threshold=threshold), now=cases.NOW
    )


@given(random_policy(), st.integers(1, 6))
@settings(max_examples=80, deadline=None)
def test_random_policies_keep_the_conventions(data, threshold):
    bundle = compile_random(data, threshold)
    if bundle is None:
        return
    check_conventions(bundle)
    assert compile_random(data, threshold).to_json() == bundle.to_json()


def test_forward_fallthrough_leaves_forwarded_traffic_to_docker():
    data = cases.minimal()
    plain = compile_device(PolicyDocument.from_dict(data), "bare", now=cases.NOW)
    docker = compile_device(
        PolicyDocument.from_dict(data),
        "bare",
        now=cases.NOW,
        options=CompileOptions(forward_fallthrough=True),
    )
    tail = '-A RPT-FORWARD -m comment --comment "rpt:sys:default" -j ACCEPT'
    assert tail in plain.iptables_v4 and tail not in docker.iptables_v4
    assert '-A RPT-INPUT -m comment --comment "rpt:sys:default" -j ACCEPT' in docker.iptables_v4
    assert "DOCKER" not in docker.iptables_v4  # never names chains it does not own
