"""Set-compiled rule runs (compiler/lower/blocks.py): the same verdict and the same deciding
rule as the linear compile for every packet, and the block partition itself."""

from __future__ import annotations

import ipaddress
import itertools
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import CompileOptions, Packet, PolicyDocument, Tracer, compile_device
from compiler.ir import ACCEPT, DROP, AddrMatch, LookupSet, PortElem, Rule, SetElement
from compiler.lower import RULESET_CACHE
from compiler.lower.blocks import (
    LEAF_MAX,
    BlockCompiler,
    _boxes,
    _Levels,
    _port_keys,
    lookup_members,
    set_rule_members,
)
from compiler.lower.options import DEFAULT_SET_TYPES
from compiler.lower.set_parts import _total, cut
from compiler.nets import parse
from compiler.render_iptables import render_rule
from compiler.render_nft import render_rule as render_nft_rule

from . import cases

ALL_TYPES = frozenset(
    {"hash:net", "hash:net,port", "hash:ip,port,net", "hash:ip,port,ip", "hash:net,port,net"}
)
THIS_KERNEL = frozenset({"hash:net", "hash:net,port", "hash:ip,port,net", "hash:ip,port,ip"})

# overlapping and disjoint networks, hosts, a /0 and a group above the ipset threshold
SOURCES = [
    "198.18.0.0/16",
    "198.18.1.0/24",
    "198.18.1.128/25",
    "198.18.1.5",
    "198.18.2.0/24",
    "198.18.3.7",
    "198.18.3.8",
    "198.18.5.1",
    "198.18.5.2",
    "198.18.5.3",
    "198.18.6.0/28",
    "198.18.6.16/28",
    "198.18.4.0/30",
    "0.0.0.0/0",
    "2001:2:0:1::/64",
    "2001:2:0:1::5",
    "biggroup",
]
DESTINATIONS = ["198.19.0.1", "198.19.0.2", "198.19.1.0/24", "198.19.0.0/23", "2001:2:0:9::1"]
BIG_GROUP = [f"198.18.9.{i}" for i in range(1, 24, 2)]
# wide ranges (> set_range_max ports) keep their ports in the set rule (`_wide`)
DPORTS = ["22", "80", "80-90", "85", "1000-1003", "1003", "443", "53", "5353", "1000-2000"]
DPORTS += ["1024-65535", "5000-5400"]

_rule = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["accept", "accept", "drop", "reject"]),
        "sources": st.lists(st.sampled_from(SOURCES), max_size=2, unique=True),
        "destinations": st.lists(st.sampled_from(DESTINATIONS), max_size=2, unique=True),
        "protocol": st.sampled_from(["tcp", "tcp", "udp", "icmp", None]),
        "dports": st.lists(st.sampled_from(DPORTS), max_size=2, unique=True),
    },
    optional={
        "sources_negate": st.just(True),
        "sports": st.just(["1024-65535"]),
        "expires_at": st.sampled_from([-1, 1]),
        "states": st.just(["new"]),
        "in_interface": st.just("eth0"),
        "reject_with": st.just("tcp-reset"),
        "log": st.just(True),
        "rate_limit": st.just("10/second"),
        "rate_limit_per_source": st.just({"rate": "6/minute"}),
        "destinations_negate": st.just(True),
        # services instead of protocol/dports: tcp+udp kernel rules of one policy rule
        "services": st.sampled_from([["web"], ["dns"], ["web", "dns"], ["wideweb"]]),
        "in_zone": st.just("lan"),
    },
)
SERVICES = [
    {"name": "web", "protocol": "tcp", "ports": ["80", "443", "1000-1003"]},
    {"name": "dns", "protocol": "udp", "ports": ["53", "5353"]},
    {"name": "dnstcp", "protocol": "tcp", "ports": ["53"]},
    {"name": "wideweb", "protocol": "tcp", "ports": ["80-90", "1024-65535"]},
]

# the rules sets are made of (one address side or both, tcp/udp ports): many per policy
_simple_rule = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["accept", "drop", "reject"]),
        "sources": st.lists(st.sampled_from(SOURCES), min_size=1, max_size=1),
        "destinations": st.lists(st.sampled_from(DESTINATIONS), max_size=1),
        "protocol": st.sampled_from(["tcp", "udp"]),
        "dports": st.lists(st.sampled_from(DPORTS), min_size=1, max_size=2, unique=True),
    }
)

# wide port ranges, few distinct lists: groups of one port list ("ports in the rule")
_wide_rule = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["accept", "drop", "reject"]),
        "sources": st.lists(st.sampled_from(SOURCES), max_size=1),
        "destinations": st.lists(st.sampled_from(DESTINATIONS), max_size=1),
        "protocol": st.sampled_from(["tcp", "udp"]),
        "dports": st.sampled_from([["1024-65535"], ["1000-2000"], ["22", "5000-5400"]]),
    }
)


def _document(raw_rules: list[dict]) -> dict:
    """A device with one rule set of `raw_rules`, made valid (ports only with tcp/udp, one
    address family per rule)."""
    rules = []
    for i, raw in enumerate(raw_rules):
        rule: dict = {"id": f"00000000-0000-4000-8000-{i:012d}", "chain": "input"}
        rule["action"] = raw["action"]
        v6 = any(":" in a for a in raw["sources"] + raw["destinations"])
        pick = [a for a in raw["sources"] if (":" in a) == v6 or a == "biggroup" and not v6]
        dsts = [a for a in raw["destinations"] if (":" in a) == v6]
        if pick:
            rule["sources"] = pick
            if raw.get("sources_negate"):
                rule["sources_negate"] = True
        if dsts:
            rule["destinations"] = dsts
            if raw.get("destinations_negate"):
                rule["destinations_negate"] = True
        for key in ("log", "rate_limit", "rate_limit_per_source"):
            if key in raw:
                rule[key] = raw[key]
        if "in_zone" in raw and "in_interface" not in raw:
            rule["in_zone"] = raw["in_zone"]
        if "services" in raw:  # instead of protocol and ports
            rule["services"] = raw["services"] + (["dnstcp"] if "dns" in raw["services"] else [])
            if raw["action"] == "reject" and "reject_with" in raw and raw["services"] == ["web"]:
                rule["reject_with"] = raw["reject_with"]
            rules.append(rule | {k: raw[k] for k in ("states", "in_interface") if k in raw})
            continue
        proto = raw["protocol"]
        if proto == "icmp" and v6:
            proto = "icmpv6"
        if proto is not None:
            rule["protocol"] = proto
            if proto in ("tcp", "udp"):
                if raw["dports"]:
                    rule["dports"] = raw["dports"]
                if "sports" in raw:
                    rule["sports"] = raw["sports"]
                if raw["action"] == "reject" and "reject_with" in raw and proto == "tcp":
                    rule["reject_with"] = raw["reject_with"]
        if "expires_at" in raw:
            rule["expires_at"] = (cases.NOW + timedelta(hours=raw["expires_at"])).isoformat()
        for key in ("states", "in_interface"):
            if key in raw:
                rule[key] = raw[key]
        rules.append(rule)
    doc = cases.minimal()
    doc["address_groups"] = [{"name": "biggroup", "members": BIG_GROUP}]
    doc["services"] = SERVICES
    doc["zones"] = [{"name": "lan", "interfaces": ["eth0"], "networks": ["198.18.1.0/24"]}]
    doc["rulesets"] = [{"name": "rs", "rules": rules}]
    doc["devices"][0]["rulesets"] = ["rs"]
    doc["devices"][0]["default_policy"]["input"] = "drop"
    return doc


def _points(texts: list[str], version: int) -> list:
    """Addresses at and around the edges of every network named in `texts`."""
    out = set()
    for text in texts:
        if text in ("biggroup", "0.0.0.0/0"):
            continue
        net = ipaddress.ip_network(text)
        if net.version != version:
            continue
        first, last = int(net.network_address), int(net.broadcast_address)
        top = (1 << net.max_prefixlen) - 1
        for value in (first, last, last + 1):
            if 0 <= value <= top:
                out.add(
                    ipaddress.ip_address(value) if version == 4 else ipaddress.IPv6Address(value)
                )
    if version == 4:
        out.update(ipaddress.ip_address(a) for a in (BIG_GROUP[0], BIG_GROUP[-1], "198.18.9.2"))
    return sorted(out)


PORTS = [22, 53, 79, 80, 85, 90, 91, 443, 1000, 1003, 1004, 1023, 1024, 2000, 2001, 5000, 5353]
PORTS += [5400, 5401, 65535]
PACKETS = [
    Packet("input", proto, src, dst, 40000 if port else None, port, icmp_type, "eth0")
    for version in (4, 6)
    for src in _points(SOURCES, version)
    for dst in _points(DESTINATIONS, version)
    for proto, port, icmp_type in [("tcp", p, None) for p in PORTS if p]
    + [("udp", p, None) for p in (53, 80, 1003, 1024, 5401)]
    + [("icmp" if version == 4 else "icmpv6", None, 8 if version == 4 else 128)]
]


def _same_answers(doc: dict, options: CompileOptions) -> int:
    """Trace every packet linearly and set-compiled; return how many set lookups the
    set-compiled program has."""
    parsed = PolicyDocument.from_dict(doc)
    linear = Tracer(compile_device(parsed, "bare", now=cases.NOW).program)
    program = compile_device(parsed, "bare", options=options, now=cases.NOW).program
    assert program is not None
    compiled = Tracer(program)
    for packet in PACKETS:
        a, b = linear.filter(packet), compiled.filter(packet)
        assert (a.verdict, a.rule_id, a.tag, a.position, a.reject_with) == (
            b.verdict,
            b.rule_id,
            b.tag,
            b.position,
            b.reject_with,
        ), packet
    return len(program.lookups)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=st.lists(st.one_of(_rule, _simple_rule, _wide_rule), min_size=1, max_size=30),
    types=st.sampled_from(
        [DEFAULT_SET_TYPES, THIS_KERNEL, ALL_TYPES, ALL_TYPES | {"hash:net,net"}]
    ),
    min_rules=st.sampled_from([1, 2, 4]),
    guard_min=st.sampled_from([None, 1, 3]),
    range_max=st.sampled_from([64, 65536]),
    elements_max=st.sampled_from([None, 16, 8192]),
)
def test_set_compiled_decides_as_linear(
    rules, types, min_rules, guard_min, range_max, elements_max
):
    """Random policies (overlapping networks and port ranges, wide ones too, mixed verdicts,
    groups, negation, expiries, states, interfaces): same verdict, same deciding rule; with
    nftables interval sets (range_max above 65535 and every type) too."""
    options = CompileOptions(
        set_compile=True,
        set_types=types,
        set_min_rules=min_rules,
        set_guard_min=guard_min,
        set_range_max=range_max,
        set_elements_max=elements_max,  # 16: sets cut in parts by port cell (or by rule)
    )
    _same_answers(_document(rules), options)


def _disjoint_rules(count: int) -> list[dict]:
    """`count` rules no two of which match one packet (each its own source /24), of the
    shapes src+port, dst host+port+src, src host+port+dst and src alone."""
    raw = []
    for i in range(count):
        kind = i % 4
        rule: dict = {"action": "accept" if i % 3 else "drop", "protocol": "tcp"}
        if kind == 0:
            rule["sources"] = [f"198.18.{10 + i}.0/24"]
            rule["dports"] = [str(1000 + i)]
        elif kind == 1:
            rule["sources"] = [f"198.18.{10 + i}.0/25"]
            rule["destinations"] = [f"198.19.{10 + i}.1"]
            rule["dports"] = [f"{2000 + 10 * i}-{2005 + 10 * i}"]
        elif kind == 2:
            rule["sources"] = [f"198.18.{10 + i}.7"]
            rule["destinations"] = [f"198.19.{10 + i}.0/24"]
            rule["dports"] = ["22"]
        else:
            rule.pop("protocol")
            rule["sources"] = [f"198.18.{10 + i}.128/25"]
        raw.append(rule)
    return raw


def _doc_of(raw: list[dict]) -> dict:
    doc = cases.minimal()
    doc["rulesets"] = [
        {
            "name": "rs",
            "rules": [
                {"id": f"00000000-0000-4000-8000-{i:012d}", "chain": "input", **r}
                for i, r in enumerate(raw)
            ],
        }
    ]
    doc["devices"][0]["rulesets"] = ["rs"]
    return doc


def test_disjoint_rules_become_few_lookups():
    """40 disjoint rules of 4 shapes and 2 verdicts: one lookup per (verdict, shape)."""
    doc = _doc_of(_disjoint_rules(40))
    parsed = PolicyDocument.from_dict(doc)
    bundle = compile_device(
        parsed,
        "bare",
        options=CompileOptions(set_compile=True, set_types=THIS_KERNEL, set_min_rules=2),
        now=cases.NOW,
    )
    assert bundle.format == 3
    assert bundle.program is not None
    chain = next(c for n, c in bundle.program.tables[(4, "filter")].chains.items() if "-I-" in n)
    assert len(chain.rules) == 8  # (accept, drop) x (sp, hps, hpd, s)
    members = [rid for r in chain.rules for rid in set_rule_members(r)]
    assert sorted(members) == sorted(f"00000000-0000-4000-8000-{i:012d}" for i in range(40))
    # every element is tagged with its own rule's tag, as its linear kernel rule is
    linear = compile_device(parsed, "bare", now=cases.NOW)
    for lset in bundle.program.lookups.values():
        for elem in lset.elements:
            assert f'--comment "{elem.tag}"' in linear.iptables_v4
    assert "counters comment\n" in bundle.ipsets
    element = "198.19.11.1,tcp:2010-2015,198.18.11.0/25"
    assert f'{element} comment "rpt:00000000-0000-4000-8000-000000000001:' in bundle.ipsets
    _same_answers(doc, CompileOptions(set_compile=True, set_types=THIS_KERNEL))


def test_off_is_linear_byte_for_byte():
    parsed = PolicyDocument.from_dict(_doc_of(_disjoint_rules(40)))
    linear = compile_device(parsed, "bare", now=cases.NOW)
    off = compile_device(parsed, "bare", options=CompileOptions(set_compile=False), now=cases.NOW)
    assert (linear.to_json(), linear.format) == (off.to_json(), 2)


def test_default_types_use_only_net_and_net_port():
    parsed = PolicyDocument.from_dict(_doc_of(_disjoint_rules(40)))
    bundle = compile_device(parsed, "bare", options=CompileOptions(set_compile=True), now=cases.NOW)
    assert {m["type"] for m in bundle.sets.values()} == {"hash:net", "hash:net,port"}
    # src+dst+port rules have no shape without hash:ip,port,net: they stay kernel rules
    assert "-s 198.18.12.7/32 -d 198.19.12.0/24 -p tcp -m tcp --dport 22" in bundle.iptables_v4


def _ir(rid: str, target: str, src: str | None = None, dport: int | None = None) -> Rule:
    return Rule(
        target,
        f"rpt:{rid}:0",
        AddrMatch(parse(src)) if src else None,
        proto="tcp" if dport else None,
        dports=((dport, dport),) if dport else None,
        rule_id=rid,
    )


def _shape_of(rules: list[Rule]) -> list[str]:
    """Each output rule as `set:<member ids>` or its rule id."""
    return [
        "set:" + "".join(set_rule_members(r)) if r.lookup is not None else str(r.rule_id)
        for r in rules
    ]


def test_an_overlapping_rule_goes_one_level_above_what_it_overlaps():
    """a..d disjoint (level 0); e overlaps a: level 1; f overlaps nothing, so it joins
    level 0 although it comes after e; the group order follows each group's first rule."""
    rules = [
        _ir("a", ACCEPT, "198.18.1.0/24", 80),
        _ir("b", ACCEPT, "198.18.2.0/24", 80),
        _ir("c", ACCEPT, "198.18.3.0/24", 80),
        _ir("d", DROP, "198.18.1.0/24", 81),
        _ir("e", DROP, "198.18.1.5", 80),
        _ir("f", DROP, "198.18.6.0/24", 80),
    ]
    out = BlockCompiler("rs", THIS_KERNEL, 2).compile(rules, 4, "input")[0]
    assert _shape_of(out) == ["set:abc", "set:df", "e"]


def test_unsettable_rule_stays_in_place_inside_its_block():
    odd = Rule(ACCEPT, "rpt:x:0", AddrMatch(parse("198.18.7.0/24")), in_iface="eth0", rule_id="x")
    rules = [_ir("a", ACCEPT, "198.18.1.0/24", 80), odd, _ir("b", ACCEPT, "198.18.2.0/24", 80)]
    out = BlockCompiler("rs", THIS_KERNEL, 2).compile(rules, 4, "input")[0]
    assert _shape_of(out) == ["set:ab", "x"]


def test_an_interface_rule_is_a_superset_box():
    """The interface is ignored by the overlap test: a rule with one that shares addresses
    with an earlier rule goes above it, though they may never match the same packet."""
    odd = Rule(ACCEPT, "rpt:x:0", AddrMatch(parse("198.18.1.0/24")), in_iface="eth0", rule_id="x")
    rules = [_ir("a", ACCEPT, "198.18.1.0/24", 80), odd, _ir("b", ACCEPT, "198.18.2.0/24", 80)]
    out = BlockCompiler("rs", THIS_KERNEL, 1).compile(rules, 4, "input")[0]
    assert _shape_of(out) == ["set:ab", "x"]


def test_small_groups_stay_linear():
    rules = [_ir(c, ACCEPT, f"198.18.{i}.0/24", 80) for i, c in enumerate("abc")]
    assert _shape_of(BlockCompiler("rs", THIS_KERNEL, 4).compile(rules, 4, "input")[0]) == list(
        "abc"
    )


def test_slash_zero_is_no_dimension():
    """0.0.0.0/0 is not a valid ipset CIDR: a /0 side is left out of the element."""
    rules = [
        _ir("a", ACCEPT, "0.0.0.0/0", 80),
        _ir("b", ACCEPT, "0.0.0.0/0", 81),
    ]
    out = BlockCompiler("rs", THIS_KERNEL, 1).compile(rules, 4, "input")[0]
    assert _shape_of(out) == ["a", "b"]  # no address dimension left: stays linear


def test_set_name_is_stable_while_the_block_keeps_its_first_rule():
    rules = [_ir(c, ACCEPT, f"198.18.{i}.0/24", 80) for i, c in enumerate("abcd")]
    one = BlockCompiler("rs", THIS_KERNEL, 2).compile(rules, 4, "input")[0]
    two = BlockCompiler("rs", THIS_KERNEL, 2).compile(rules[:2] + rules[3:], 4, "input")[0]
    assert one[0].lookup is not None and two[0].lookup is not None
    assert one[0].lookup.name == two[0].lookup.name
    assert len(one[0].lookup.name) <= 31


def test_many_disjoint_rules_become_one_lookup():
    """5000 disjoint rules (each its own host) give one lookup of 5000 elements."""
    rules = [
        _ir(f"r{i}", ACCEPT, f"198.{18 + i // 65536}.{(i // 256) % 256}.{i % 256}", 1000 + i % 7)
        for i in range(5000)
    ]
    out = BlockCompiler("rs", THIS_KERNEL, 4).compile(rules, 4, "input")[0]
    assert len(out) == 1 and out[0].lookup is not None
    assert len(out[0].lookup.elements) == 5000


def test_ports_expand_in_size():
    rules = [
        Rule(
            ACCEPT,
            f"rpt:{c}:0",
            AddrMatch(parse(f"198.18.{i}.0/24")),
            proto="udp",
            dports=((1000, 1009),),
            rule_id=c,
        )
        for i, c in enumerate("ab")
    ]
    out = BlockCompiler("rs", THIS_KERNEL, 1).compile(rules, 4, "input")[0]
    assert out[0].lookup is not None and out[0].lookup.size == 20


def test_a_group_in_a_block_set_leaves_no_address_set():
    """A rule over a group above the ipset threshold: its networks become elements of the
    block's set, and its own address set is left out of the bundle."""
    doc = _doc_of(
        [
            {"action": "accept", "sources": ["biggroup"], "protocol": "tcp", "dports": ["80"]},
            {"action": "accept", "sources": ["198.18.7.0/24"], "protocol": "tcp", "dports": ["80"]},
        ]
    )
    doc["address_groups"] = [{"name": "biggroup", "members": BIG_GROUP}]
    parsed = PolicyDocument.from_dict(doc)
    linear = compile_device(parsed, "bare", now=cases.NOW)
    assert [m["type"] for m in linear.sets.values()] == ["hash:net"]
    options = CompileOptions(set_compile=True, set_min_rules=2)
    bundle = compile_device(parsed, "bare", options=options, now=cases.NOW)
    assert [(m["type"], m["entries"]) for m in bundle.sets.values()] == [("hash:net,port", 13)]
    _same_answers(doc, options)


def test_trace_names_the_element_rule_and_the_set_rule():
    doc = _doc_of(_disjoint_rules(40))
    options = CompileOptions(set_compile=True, set_types=THIS_KERNEL, set_min_rules=2)
    program = compile_device(PolicyDocument.from_dict(doc), "bare", options=options, now=cases.NOW)
    assert program.program is not None
    result = Tracer(program.program).trace(
        Packet.from_params(
            {
                "protocol": "tcp",
                "source": "198.18.14.9",
                "destination": "198.19.0.1",
                "dport": "1004",
            }
        )
    )
    rid = "00000000-0000-4000-8000-000000000004"
    assert (result.verdict, result.rule_id, result.position) == ("accept", rid, 5)
    last = result.path[-1]
    assert last.tag.startswith(f"rpt:{rid}:") and "--match-set rpt-4sp-" in last.rule
    members = lookup_members(program.program)
    assert rid in next(ids for name, ids in members.items() if name in last.rule)


def test_the_lowering_cache_gives_the_bytes_of_a_cold_compile():
    """Linear then set-compiled, then after an edit: each equals a compile from nothing."""
    raw = _disjoint_rules(40)
    edited = [dict(r) for r in raw]
    edited[17]["action"] = "drop" if edited[17]["action"] == "accept" else "accept"
    options = CompileOptions(set_compile=True, set_types=THIS_KERNEL, set_min_rules=2)
    RULESET_CACHE.clear()
    for doc in (_doc_of(raw), _doc_of(edited)):
        parsed = PolicyDocument.from_dict(doc)
        compile_device(parsed, "bare", now=cases.NOW)
        warm = compile_device(parsed, "bare", options=options, now=cases.NOW)
        RULESET_CACHE.clear()
        cold = compile_device(parsed, "bare", options=options, now=cases.NOW)
        assert warm.to_json() == cold.to_json()
        compile_device(
            PolicyDocument.from_dict(_doc_of(raw)), "bare", options=options, now=cases.NOW
        )


_pool = [
    _ir(f"r{i}", ACCEPT if i % 3 else DROP, src, port)
    for i, (src, port) in enumerate(
        itertools.product(
            ["198.18.1.0/24", "198.18.1.5", "198.18.2.0/24", "198.18.0.0/16", None],
            [80, 81, 443, None],
        )
    )
]


@settings(max_examples=200, deadline=None)
@given(
    before=st.lists(st.sampled_from(range(len(_pool))), max_size=25, unique=True),
    edits=st.lists(
        st.tuples(st.sampled_from(["insert", "delete"]), st.integers(0, 30), st.integers(0, 19)),
        min_size=1,
        max_size=3,
    ),
)
def test_an_edit_reuses_blocks_and_gives_the_cold_result(before, edits):
    """A compile with the last one's blocks equals a compile from nothing, whatever the
    edits (inserted and deleted rules anywhere)."""
    after = list(before)
    for kind, at, which in edits:
        if kind == "insert" and which not in after:
            after.insert(at % (len(after) + 1), which)
        elif kind == "delete" and after:
            after.pop(at % len(after))
    compiler = BlockCompiler("rs", THIS_KERNEL, 1)
    _, left = compiler.compile([_pool[i] for i in before], 4, "input")
    warm, _ = compiler.compile([_pool[i] for i in after], 4, "input", left)
    cold, _ = compiler.compile([_pool[i] for i in after], 4, "input")
    assert warm == cold


def test_a_100k_group_stays_an_address_set():
    """Too many elements for a block's set: the rule keeps its sized address set."""
    parsed = PolicyDocument.from_dict(cases.big_group())
    options = CompileOptions(set_compile=True, set_types=THIS_KERNEL, set_min_rules=1)
    bundle = compile_device(parsed, "edge", options=options, now=cases.NOW)
    assert [(m["type"], m["entries"]) for m in bundle.sets.values()] == [("hash:net", 100_000)]
    assert bundle.program is not None and not bundle.program.lookups


def _wide(rid: str, src: str | None, ports: tuple, dst: str | None = None) -> Rule:
    return Rule(
        ACCEPT,
        f"rpt:{rid}:0",
        AddrMatch(parse(src)) if src else None,
        AddrMatch(parse(dst)) if dst else None,
        proto="tcp",
        dports=ports,
        rule_id=rid,
    )


def test_wide_ranges_keep_their_ports_in_the_rule_unless_ranges_are_elements():
    """ipset: a group of the same wide port list is one rule `-p tcp --dport 1024:65535
    -m set <their sources> src`; a different port list is another group; a wide rule
    without an address, or with both sides and no hash:net,net, stays a kernel rule.
    nft intervals: the ranges are elements."""
    wide = ((1024, 65535),)
    rules = [
        _wide("a", "198.18.0.0/24", wide),
        _wide("b", "198.18.1.0/24", wide),
        _wide("c", "198.18.2.0/24", ((22, 22), (1024, 65535))),
        _wide("d", None, ((1, 1023),)),
        _wide("e", "198.18.3.0/24", wide, "198.19.0.0/24"),
    ]
    out = BlockCompiler("rs", THIS_KERNEL, 1).compile(rules, 4, "input")[0]
    # d (every source, ports 1-1023) overlaps c (port 22): the level above
    assert _shape_of(out) == ["set:ab", "set:c", "e", "d"]
    assert [(r.proto, r.dports, r.lookup.shape) for r in out[:2] if r.lookup] == [
        ("tcp", wide, "s"),
        ("tcp", ((22, 22), (1024, 65535)), "s"),
    ]
    assert out[0].lookup is not None and [e.values for e in out[0].lookup.elements] == [
        (parse("198.18.0.0/24")[0],),
        (parse("198.18.1.0/24")[0],),
    ]
    line = render_rule("C", out[0], 4)
    assert line == (
        f"-A C -p tcp -m tcp --dport 1024:65535 -m set --match-set {out[0].lookup.name} src"
        f' -m comment --comment "rpt:sys:set:{out[0].lookup.name}" -j ACCEPT'
    )
    assert f"tcp dport 1024-65535 ip saddr @{out[0].lookup.name} counter accept" in (
        render_nft_rule(out[0], 4, "filter")
    )
    # the two groups' sets have their own names (the ports name them too)
    assert out[0].lookup.name != out[1].lookup.name  # type: ignore[union-attr]
    assert "-m multiport --dports 22,1024:65535 -m set" in render_rule("C", out[1], 4)
    both = BlockCompiler("rs", ALL_TYPES | {"hash:net,net"}, 1).compile(rules, 4, "input")[0]
    assert _shape_of(both) == ["set:ab", "set:c", "set:e", "d"]
    assert both[2].lookup is not None and both[2].lookup.shape == "sd"
    nft = BlockCompiler("rs", THIS_KERNEL, 1, range_max=65536).compile(rules[:2], 4, "input")[0]
    assert _shape_of(nft) == ["set:ab"] and nft[0].proto is None
    assert nft[0].lookup is not None and nft[0].lookup.elements[0].values[1].hi == 65535


def _reachable(chains: dict, name: str) -> list:
    """The kernel rules (not jumps) reached from chain `name`, depth first."""
    out = []
    for rule in chains[name].rules:
        out.extend(_reachable(chains, rule.arg) if rule.target == "JUMP" else [rule])
    return out


def test_kernel_rules_of_a_block_go_behind_one_guard():
    """20 disjoint rules sets cannot hold (port ranges of 1001 ports, each its own, so no
    group of one port list either): one guard lookup of their sources jumps to a chain of
    them, sorted by port behind jumps by port range; traces stay those of the linear
    compile."""
    raw = [
        {
            "action": "accept" if i % 2 else "drop",
            "sources": [f"198.18.{i}.0/24"],
            "protocol": "tcp",
            "dports": [f"{1000 + i}-{2000 + i}"],
        }
        for i in range(20)
    ]
    doc = _doc_of(raw)
    options = CompileOptions(set_compile=True, set_guard_min=16)
    bundle = compile_device(PolicyDocument.from_dict(doc), "bare", options=options, now=cases.NOW)
    assert bundle.program is not None
    chains = bundle.program.tables[(4, "filter")].chains
    main = next(c for name, c in chains.items() if name.startswith("RPT-I-rs-"))
    (jump,) = main.rules
    assert jump.target == "JUMP" and jump.src is not None and jump.src.set_name is not None
    # no more than LEAF_MAX (32): in one chain, sorted by port
    guarded = chains[jump.arg].rules
    assert [r.dports for r in guarded] == [((1000 + i, 2000 + i),) for i in range(20)]
    assert sorted(r.rule_id for r in _reachable(chains, jump.arg)) == sorted(
        f"00000000-0000-4000-8000-{i:012d}" for i in range(20)
    )
    # their sources collapsed: 198.18.0.0/20 and 198.18.16.0/22
    assert [m["entries"] for m in bundle.sets.values()] == [2]
    assert "-m set --match-set rpt-4-" in bundle.iptables_v4
    _same_answers(doc, options)


def test_a_large_guard_is_a_port_tree():
    """300 wide-range rules of one level: a packet meets a few jumps by port range and one
    leaf of at most LEAF_MAX rules, not 300; every rule is reached once; traces as linear."""
    raw = [
        {
            "action": "accept" if i % 3 else "drop",
            "sources": [f"198.18.{i % 250}.{(i // 250) * 128}/25"],
            "protocol": "tcp" if i % 5 else "udp",
            "dports": [f"{1000 + 97 * i}-{1000 + 97 * i + 90}"],
        }
        for i in range(300)
    ]
    doc = _doc_of(raw)
    options = CompileOptions(set_compile=True, set_guard_min=16)
    program = compile_device(
        PolicyDocument.from_dict(doc), "bare", options=options, now=cases.NOW
    ).program
    assert program is not None
    chains = program.tables[(4, "filter")].chains
    main = next(c for name, c in chains.items() if name.startswith("RPT-I-rs-"))
    (jump,) = main.rules
    reached = _reachable(chains, jump.arg)
    assert len(reached) == 300 and len({r.rule_id for r in reached}) == 300
    leaves = [c for c in chains.values() if c.rules and all(r.target != "JUMP" for r in c.rules)]
    assert max(len(c.rules) for c in leaves) <= LEAF_MAX
    top = chains[jump.arg].rules  # tcp: 240 rules in 8 parts of 30; udp: 60 in 8 of 8
    assert [(r.target, r.proto) for r in top] == [("JUMP", "tcp")] * 8 + [("JUMP", "udp")] * 8
    src, dst = ipaddress.ip_address("198.18.7.1"), ipaddress.ip_address("198.19.0.1")
    tcp = Packet("input", "tcp", src, dst, 40000, 1000 + 97 * 7 + 5, None, "eth0")
    linear = Tracer(compile_device(PolicyDocument.from_dict(doc), "bare", now=cases.NOW).program)
    compiled = Tracer(program)
    assert compiled.filter(tcp).rule_id == linear.filter(tcp).rule_id == raw_id(7)
    for port in range(1000, 1000 + 97 * 300, 41):
        for proto in ("tcp", "udp"):
            packet = Packet("input", proto, src, dst, 40000, port, None, "eth0")
            a, b = linear.filter(packet), compiled.filter(packet)
            assert (a.verdict, a.rule_id) == (b.verdict, b.rule_id), packet


def raw_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def test_levels_hoist_past_rules_that_do_not_overlap():
    """Pairs of overlapping rules of opposite verdicts, one pair per /24: a greedy cut into
    disjoint runs would end a block at every pair; levels give two (each pair's first rule
    below its second), so two lookups per verdict in all."""
    raw = []
    for i in range(50):
        raw.append(
            {
                "action": "accept",
                "sources": [f"198.18.{i}.0/24"],
                "protocol": "tcp",
                "dports": ["443"],
            }
        )
        raw.append(
            {"action": "drop", "sources": [f"198.18.{i}.9"], "protocol": "tcp", "dports": ["443"]}
        )
    doc = _doc_of(raw)
    options = CompileOptions(set_compile=True, set_types=THIS_KERNEL)
    assert _same_answers(doc, options) == 2
    program = compile_device(
        PolicyDocument.from_dict(doc), "bare", options=options, now=cases.NOW
    ).program
    assert program is not None
    main = next(
        c
        for name, c in program.tables[(4, "filter")].chains.items()
        if name.startswith("RPT-I-rs-")
    )
    assert [(r.target, len(r.lookup.elements)) for r in main.rules if r.lookup] == [
        ("ACCEPT", 50),
        ("DROP", 50),
    ]


def test_interval_sets_hold_every_shape_in_one_set_per_verdict():
    """nftables (ranges are elements, every type): rules with a source, a destination or
    both, ports or none, become one `saddr . l4proto . dport . daddr` set per verdict and
    level (a side a rule does not name is every address) and one `saddr . daddr` set."""
    raw = _disjoint_rules(24)
    doc = _doc_of(raw)
    options = CompileOptions(
        set_compile=True, set_types=ALL_TYPES | {"hash:net,net"}, set_range_max=65536
    )
    _same_answers(doc, options)
    program = compile_device(
        PolicyDocument.from_dict(doc), "bare", options=options, now=cases.NOW
    ).program
    assert program is not None
    shapes = sorted((r.target, r.lookup.shape) for r in _rules_with_lookups(program))
    assert len(shapes) == len(set(shapes)) and {shape for _, shape in shapes} == {"sd", "spd"}
    assert {target for target, shape in shapes if shape == "spd"} == {"ACCEPT", "DROP"}
    text = render_nft_rule(next(iter(_rules_with_lookups(program))), 4, "filter")
    assert (
        "ip saddr . meta l4proto . th dport . ip daddr @" in text or "ip saddr . ip daddr @" in text
    )


def _rules_with_lookups(program) -> list:
    return [
        r
        for chain in program.tables[(4, "filter")].chains.values()
        for r in chain.rules
        if r.lookup is not None
    ]


def test_a_large_ipset_is_cut_in_parts_by_rule():
    """More kernel elements than `set_elements_max` in one set: parts, by port cell where
    the elements have ports (each part rule says `-p P --dport <cell>`, so a packet does
    one lookup per group) and by rule otherwise; traces stay linear; adding a rule
    changes one part's elements only; nftables interval sets likewise."""
    raw = _disjoint_rules(200)
    options = CompileOptions(set_compile=True, set_types=THIS_KERNEL, set_elements_max=16)
    _same_answers(_doc_of(raw), options)

    def parts(rules: list[dict], opts: CompileOptions) -> dict[str, set[str]]:
        program = compile_device(
            PolicyDocument.from_dict(_doc_of(rules)), "bare", options=opts, now=cases.NOW
        ).program
        assert program is not None
        return {name: set(ids) for name, ids in lookup_members(program).items()}

    program = compile_device(
        PolicyDocument.from_dict(_doc_of(raw)), "bare", options=options, now=cases.NOW
    ).program
    assert program is not None
    cells = [r.dports for r in _rules_with_lookups(program) if "dport" in r.lookup.dims]
    assert cells and all(c is not None and len(c) == 1 for c in cells)
    one = parts(raw, options)
    sizes = sorted(len(ids) for ids in one.values())
    assert len(one) > 4 and sizes[-1] < 60  # cut (200 rules would be a few sets whole)
    extra = {"action": "drop", "sources": ["198.18.250.0/24"], "protocol": "tcp", "dports": ["7"]}
    two = parts([*raw, extra], options)
    changed = [name for name in one if one[name] != two.get(name)]
    assert len(changed) <= 1 and set(one) <= set(two)
    native = CompileOptions(
        set_compile=True,
        set_types=ALL_TYPES | {"hash:net,net"},
        set_range_max=65536,
        set_elements_max=16,
    )
    assert len(parts(raw, native)) > 4
    _same_answers(_doc_of(raw), native)


_CELL_BITS = {4: 24, 6: 48}


@st.composite
def _box(draw, family: int) -> tuple:
    """A box (see blocks.Box) of prefixes clustered in a few /24 (/48) cells, short ones
    across them, /0 too; tcp/udp with port lists over one or many 64-port buckets."""
    bits = 32 if family == 4 else 128
    cell = _CELL_BITS[family]
    lens = [0, 8, 16, 22, 23, 24, 25, 30, 32] if family == 4 else [0, 32, 47, 48, 49, 64, 128]

    def side() -> tuple[int, int, int]:
        plen = draw(st.sampled_from(lens))
        value = (draw(st.integers(0, 3)) << (bits - cell)) | draw(
            st.integers(0, (1 << (bits - cell)) - 1)
        )
        first = value & ~((1 << (bits - plen)) - 1)
        return first, first | ((1 << (bits - plen)) - 1), plen

    proto = draw(st.sampled_from([None, "tcp", "tcp", "udp", "icmp"]))
    ports = None
    if proto in ("tcp", "udp") and draw(st.booleans()):
        starts = st.sampled_from([1, 63, 64, 80, 127, 128, 1000, 1023, 1024, 65535])
        ranges = st.tuples(starts, st.integers(0, 1200))
        ports = tuple(
            sorted(
                (lo, min(65535, lo + n))
                for lo, n in draw(st.lists(ranges, min_size=1, max_size=20))
            )
        )
    return (*side(), *side(), proto, ports)


def _boxes_meet(a: tuple, b: tuple) -> bool:
    """Whether two boxes share a point, by brute force over their ports."""
    if a[1] < b[0] or b[1] < a[0] or a[4] < b[3] or b[4] < a[3]:
        return False
    if a[6] is None or b[6] is None:
        return True
    if a[6] != b[6]:
        return False
    if a[7] is None or b[7] is None:
        return True
    ports = {p for lo, hi in a[7] for p in range(lo, hi + 1)}
    return any(p in ports for lo, hi in b[7] for p in range(lo, hi + 1))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([4, 6]).flatmap(
        lambda family: st.tuples(
            st.just(family),
            st.lists(st.lists(_box(family), min_size=1, max_size=3), min_size=1, max_size=40),
        )
    )
)
def test_the_overlap_index_finds_every_overlap(case):
    """`_Levels.level_of` (indexed by protocol, port bucket and source cell) against the
    O(n^2) placement: never lower (a missed overlap would put a rule beside one it meets),
    and, this far below the candidate bound, exactly as high."""
    family, rules = case
    index = _Levels(family)
    levels: list[int] = []
    for i, boxes in enumerate(rules):
        keys = [_port_keys(b) for b in boxes]
        at = index.level_of(boxes, keys)
        brute = max(
            (
                levels[j] + 1
                for j in range(i)
                if any(_boxes_meet(a, b) for a in boxes for b in rules[j])
            ),
            default=0,
        )
        assert at == brute, (i, boxes)
        index.add(boxes, keys, at)
        levels.append(at)


def test_a_tcp_reset_set_rule_names_tcp():
    """REJECT --reject-with tcp-reset needs `-p tcp` in its rule (iptables-restore fails
    without it: kernel test in test_blocks_kernel.py); nftables' text stays as it was."""
    rules = [
        Rule(
            "REJECT",
            f"rpt:{c}:0",
            AddrMatch(parse(f"198.18.{i}.0/24")),
            proto="tcp",
            dports=((80, 80),),
            arg="tcp-reset",
            rule_id=c,
        )
        for i, c in enumerate("ab")
    ]
    (out,) = BlockCompiler("rs", THIS_KERNEL, 1).compile(rules, 4, "input")[0]
    assert out.lookup is not None and out.proto == "tcp"
    assert render_rule("C", out, 4).startswith(f"-A C -p tcp -m set --match-set {out.lookup.name}")
    assert "-j REJECT --reject-with tcp-reset" in render_rule("C", out, 4)
    nft = render_nft_rule(out, 4, "filter")
    assert nft.count("meta l4proto tcp") == 1 and "reject with tcp reset" in nft


def test_elements_spanning_the_port_space_are_cut_by_rule_not_by_port():
    """5,000 elements over ports 1024-65535 (nft intervals): halving by port would put a
    piece of each in every cell; they are cut by rule instead, each element once."""
    lset = LookupSet("rpt-4spd-x", 4, "spd")
    whole = parse("0.0.0.0/0")[0]
    for i in range(5000):
        src = parse(f"198.18.{i // 250}.{i % 250}")[0]
        lset.elements.append(
            SetElement((src, PortElem("tcp", 1024, 65535), whole), f"rpt:{i}:0", f"r{i}")
        )
    rule = Rule(ACCEPT, "rpt:sys:set:rpt-4spd-x", lookup=lset)
    parts = cut(rule, "g", 512, True, lambda key: f"rpt-4spd-{abs(hash(key)) % 10**8}")
    assert 8 <= len(parts) <= 16
    assert sum(len(p.lookup.elements) for p in parts) == 5000  # type: ignore[union-attr]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([4, 6]).flatmap(
        lambda family: st.tuples(
            st.just(family),
            st.lists(st.lists(_box(family), min_size=1, max_size=3), min_size=1, max_size=40),
        )
    )
)
def test_place_is_level_of_then_add(case):
    """`_Levels.place` (one keyed box with a source cell in one pass, `_place_one`) puts
    every rule where `level_of` then `add` put it, and files it as they do."""
    family, rules = case
    fast, general = _Levels(family), _Levels(family)
    for boxes in rules:
        keys = [_port_keys(b) for b in boxes]
        at = general.level_of(boxes, keys)
        general.add(boxes, keys, at)
        assert fast.place(boxes, keys) == at
    assert fast.top == general.top
    assert sorted(fast.by_proto, key=str) == sorted(general.by_proto, key=str)
    for proto, index in general.by_proto.items():
        assert fast.by_proto[proto].items == index.items


_IR_NETS = [
    None,
    "198.18.0.0/24",
    "198.18.1.7",
    "0.0.0.0/0",
    "198.18.2.0/24,198.18.4.0/23",
    "198.18.7.0/25",
]


@st.composite
def _ir_rule(draw) -> Rule:
    """One kernel rule of any shape `BlockCompiler._single` may or may not take."""

    def side() -> AddrMatch | None:
        text = draw(st.sampled_from(_IR_NETS))
        if text is None:
            return None
        nets = tuple(n for part in text.split(",") for n in parse(part))
        return AddrMatch(nets, draw(st.sampled_from([False, False, False, True])))

    proto = draw(st.sampled_from([None, "tcp", "tcp", "udp", "icmp"]))
    dports = None
    if proto in ("tcp", "udp") and draw(st.integers(0, 9)):
        starts = st.sampled_from([1, 63, 64, 80, 1000, 65535])
        ranges = st.tuples(starts, st.sampled_from([0, 0, 1, 62, 63, 64, 500]))
        dports = tuple(
            sorted(
                (lo, min(65535, lo + n)) for lo, n in draw(st.lists(ranges, min_size=1, max_size=4))
            )
        )
    return Rule(
        draw(st.sampled_from([ACCEPT, DROP, "REJECT", "LOG"])),
        "rpt:r:0",
        side(),
        side(),
        in_iface=draw(st.sampled_from([None, None, None, "eth0"])),
        proto=proto,
        dports=dports,
        arg=draw(st.sampled_from([None, None, "tcp-reset"])),
        rule_id="r",
    )


@settings(max_examples=400, deadline=None)
@given(
    _ir_rule(),
    st.sampled_from([4]),
    st.sampled_from(
        [THIS_KERNEL, ALL_TYPES, DEFAULT_SET_TYPES, frozenset({"hash:net,net"} | ALL_TYPES)]
    ),
    st.sampled_from([64, 65536]),
)
def test_single_rule_fact_equals_the_general_functions(rule, family, types, range_max):
    """`BlockCompiler._single` (boxes, port keys and plan of a one-kernel-rule policy rule
    in one pass) gives what `_boxes`, `_port_keys` and `_plan` give, or None."""
    blocks = BlockCompiler("rs", types, 1, range_max)
    single = blocks._single(rule, family)
    if single is None:
        return
    boxes = _boxes([rule], family)
    assert single == (boxes, [_port_keys(b) for b in boxes], blocks._plan([rule], family))


def test_single_rule_fact_takes_the_frequent_rules():
    """One source network, tcp/udp ports, with or without one destination: `_single`."""
    blocks = BlockCompiler("rs", THIS_KERNEL, 1)
    src, dst = AddrMatch(parse("198.18.0.0/24")), AddrMatch(parse("198.19.0.1"))
    for d in (None, dst):
        for ports in (((80, 80),), ((80, 90), (443, 443)), ((1000, 2000),)):
            rule = Rule(ACCEPT, "t", src, d, proto="tcp", dports=ports, rule_id="r")
            assert blocks._single(rule, 4) is not None


@given(
    st.lists(st.tuples(st.integers(1, 65535), st.integers(0, 300)), max_size=40),
    st.integers(1, 3000),
    st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_counting_elements_stops_past_the_limit_and_says_the_same(ports, limit, intervals):
    """`set_parts._total` with a limit: past it exactly when the whole sum is."""
    net = parse("198.18.0.0/24")[0]
    elements = [
        SetElement((net, PortElem("tcp", lo, min(65535, lo + n))), "t", "r") for lo, n in ports
    ]
    whole = _total(elements, 1, intervals)
    assert whole == (
        len(elements) if intervals else sum(e.values[1].hi - e.values[1].lo + 1 for e in elements)
    )
    assert (_total(elements, 1, intervals, limit) > limit) == (whole > limit)
