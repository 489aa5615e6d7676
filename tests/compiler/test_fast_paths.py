"""The compiler's shortcuts give exactly what the general code gives: the fused lowering of
simple rules, the cached rule tags, the per-ruleset fallback ids and the bundle hash fed
piece by piece."""

from __future__ import annotations

import hashlib
import ipaddress
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import CompileOptions, DocumentError, PolicyDocument, compile_device
from compiler import nets as N
from compiler import values as V
from compiler.document import fallback_ids, fallback_rule_id
from compiler.document.parser import Parser
from compiler.lower import RULESET_CACHE, rule_tag, rule_tagger
from compiler.resolve import Resolver
from rampart_agent import protocol

from . import cases

SOURCES = [
    "198.18.0.0/24",
    "198.18.0.7",
    "198.18.1.0/25",
    "2001:2::/64",
    "2001:2::5",
    "0.0.0.0/0",
    "::/0",
    "198.18.4.10-198.18.4.40",
    "web",
    "grp",
    "198.18.9.1",
]
PORTS = ["22", "80", "443", "1000-2000", "8000", "65535", "1-1023", "2049", "3000-3001"]


def simple_rules(rnd: random.Random, n: int) -> list[dict]:
    """Mostly the shape the fused path takes, with every way of falling out of it."""
    rules = []
    for _ in range(n):
        rule: dict = {
            "chain": rnd.choice(["input", "output", "forward"]),
            "action": rnd.choice(["accept", "drop", "reject"]),
            "protocol": rnd.choice(["tcp", "tcp", "udp", "icmp", "any"]),
            "sources": rnd.sample(SOURCES, rnd.choice([1, 1, 1, 1, 2])),
        }
        if rnd.random() < 0.4:
            rule["destinations"] = rnd.sample(SOURCES, rnd.choice([1, 1, 2]))
        if rule["protocol"] in ("tcp", "udp"):
            rule["dports"] = rnd.sample(PORTS, rnd.choice([0, 1, 1, 2, 7, 8, 9]))
            if rnd.random() < 0.2:
                rule["sports"] = rnd.sample(PORTS, rnd.choice([1, 2, 8]))
        for key, value in (
            ("sources_negate", True),
            ("destinations_negate", True),
            ("log", True),
            ("states", ["new", "established"]),
            ("rate_limit", "10/second"),
            ("enabled", False),
        ):
            if rnd.random() < 0.1:
                rule[key] = value
        if rule["chain"] != "output" and rnd.random() < 0.1:
            rule["in_interface"] = "eth0"
        if rnd.random() < 0.3:
            rule["id"] = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        rules.append(rule)
    return rules


def valid_document(seed: int) -> dict:
    """Random simple rules, minus the ones the parser refuses (mixed families)."""
    rnd = random.Random(seed)
    data = {
        "version": 1,
        "addresses": [{"name": "web", "value": "198.18.3.3"}],
        "address_groups": [{"name": "grp", "members": ["198.18.5.0/24", "198.18.6.1"]}],
        "rulesets": [{"name": "rs", "rules": simple_rules(rnd, 150)}],
        "devices": [{"name": "d", "rulesets": ["rs"]}],
    }
    for _ in range(20):
        try:
            PolicyDocument.from_dict(data)
            return data
        except DocumentError as exc:
            bad = {int(e.path.split(".rules[")[1].split("]")[0]) for e in exc.errors}
            rules = data["rulesets"][0]["rules"]
            data["rulesets"][0]["rules"] = [r for i, r in enumerate(rules) if i not in bad]
    raise AssertionError("no valid document")


@pytest.mark.parametrize("seed", range(12))
def test_fused_lowering_equals_the_general_path(seed, monkeypatch):
    doc = PolicyDocument.from_dict(valid_document(seed))
    options = CompileOptions(ipset_threshold=1 + seed % 3)
    fast = compile_device(doc, "d", options=options, now=cases.NOW)
    assert fast.iptables_v4.count("\n-A RPT-") > 50
    monkeypatch.setattr(Resolver, "simple_net", lambda self, ref: None)
    RULESET_CACHE.clear()  # lower it again, the general way
    general = compile_device(doc, "d", options=options, now=cases.NOW)
    assert fast.to_json() == general.to_json()


@pytest.mark.parametrize("seed", range(4))
def test_cached_tags_equal_rule_tag(seed):
    doc = PolicyDocument.from_dict(valid_document(seed))
    tag = rule_tagger()
    for rs in doc.rulesets:
        for i, rule in enumerate(rs.rules):
            assert tag(f"id-{i}", rule) == rule_tag(f"id-{i}", rule)


def test_fallback_ids_equal_fallback_rule_id():
    for ruleset in ("bench", "web-baseline", "ü"):
        for kind in ("rules", "nat"):
            ids = fallback_ids(ruleset, kind)
            assert all(ids(i) == fallback_rule_id(ruleset, kind, i) for i in range(3000))


@pytest.mark.parametrize("case", sorted(cases.CASES))
def test_bundle_hash_is_the_agents_bundle_hash(case):
    """The compiler and the agent hash a bundle the same way (the agent refuses a bundle
    whose hash it cannot reproduce), with or without the console's rule index."""
    build, device = cases.CASES[case]
    bundle = compile_device(PolicyDocument.from_dict(build()), device, now=cases.NOW)
    assert bundle.hash == protocol.bundle_hash(bundle.to_dict())
    assert bundle.hash == protocol.bundle_hash(bundle.to_dict(rules=False))
    assert "rules" not in bundle.to_dict(rules=False)


def test_bundle_hash_frames_every_field():
    """A fixed list of fields, each with its type and length: every byte counts, moving
    bytes between fields, a string for a number or a field the list does not know cannot
    give another bundle the same hash."""
    body = {
        "format": 2,
        "device": "d",
        "iptables_v4": "*filter\nCOMMIT\n",
        "iptables_v6": "",
        "ipsets": "",
        "chains": {"v4": {}},
        "sets": {},
    }
    digest = protocol.bundle_hash(body)
    assert (
        digest
        == hashlib.sha256(
            b"format j 1\n2"
            + b"device s 1\nd"
            + b"iptables_v4 s 15\n*filter\nCOMMIT\n"
            + b"iptables_v6 s 0\n"
            + b"ipsets s 0\n"
            + b'chains j 9\n{"v4":{}}'
            + b"sets j 2\n{}"
        ).hexdigest()
    )
    assert (
        protocol.bundle_hash(dict(body, iptables_v4="*filter\nCOMMIT", iptables_v6="\n")) != digest
    )
    assert protocol.bundle_hash(dict(body, format="2")) != digest
    assert protocol.bundle_hash(dict(body, sets={"rpt-4-x": {}})) != digest
    assert protocol.bundle_hash({k: v for k, v in body.items() if k != "sets"}) != digest
    assert protocol.bundle_hash(dict(body, rules={"x": {}}, hash="y")) == digest


# Values a rule field may take: canonical ones (the plain path) and every kind of thing it
# must hand to the general parser (wrong types, odd spellings, errors).
_ANY_VALUE = st.sampled_from([None, 1, True, "", " x ", [], {}, ["a", 1]])
_RULE_VALUES = {
    "id": st.sampled_from(
        [
            "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1",
            "0B6C6A4E-1F5E-4A43-9D53-3A3F7CF0A0A1",
            "0b6c6a4e1f5e4a439d533a3f7cf0a0a1",
            "nope",
            "9e107d9d-3728-4a0c-8d6e-51a2c4d9f7a3",
        ]
    ),
    "chain": st.sampled_from(["input", "output", "forward", "INPUT", "postrouting"]),
    "action": st.sampled_from(["accept", "drop", "reject", "Accept", "log"]),
    "protocol": st.sampled_from(["tcp", "udp", "any", "icmp", "icmpv6", "sctp"]),
    "sources": st.lists(
        st.sampled_from(
            [
                "198.18.0.0/24",
                " 198.18.0.7",
                "2001:2::/64",
                "web",
                "grp",
                "v6host",
                "empty",
                "198.18.0.0/33",
                "nosuch",
                "198.18.4.10-198.18.4.40",
                7,
            ]
        ),
        max_size=3,
    ),
    "dports": st.lists(
        st.sampled_from(["22", " 443", "1000-2000", "70000", "2000-1000", "x", 22]), max_size=3
    ),
    "comment": st.sampled_from(["", "web", "x" * 1001, 5]),
    "enabled": st.sampled_from([True, False, None, "yes"]),
    "log": st.sampled_from([False, True]),
    "states": st.just(["new"]),
    "in_interface": st.just("eth0"),
}


@st.composite
def rule_dicts(draw) -> dict:
    keys = draw(
        st.lists(
            st.sampled_from(
                sorted(
                    set(_RULE_VALUES)
                    | {"destinations", "sports", "sources_negate", "destinations_negate"}
                )
            ),
            unique=True,
        )
    )
    rule = {"chain": draw(_RULE_VALUES["chain"]), "action": draw(_RULE_VALUES["action"])}
    for key in keys:
        strategy = {
            "destinations": _RULE_VALUES["sources"],
            "sports": _RULE_VALUES["dports"],
            "sources_negate": _RULE_VALUES["enabled"],
            "destinations_negate": _RULE_VALUES["enabled"],
        }.get(key, _RULE_VALUES.get(key))
        rule[key] = draw(
            st.one_of(strategy, _ANY_VALUE) if draw(st.integers(0, 9)) == 0 else strategy
        )
    return rule


def _parse(data: dict):
    try:
        return PolicyDocument.from_dict(data)
    except DocumentError as exc:
        return [(e.path, e.message, e.rule_id) for e in exc.errors]


@given(st.lists(rule_dicts(), max_size=6))
@settings(max_examples=400, deadline=None)
def test_plain_rule_parser_equals_the_general_one(rules):
    """Same document or same errors, whichever path each rule takes."""
    data = {
        "version": 1,
        "addresses": [
            {"name": "web", "value": "198.18.3.3"},
            {"name": "v6host", "value": "2001:2::5"},
        ],
        "address_groups": [
            {"name": "grp", "members": ["198.18.5.0/24", "web"]},
            {"name": "empty", "members": []},
        ],
        "rulesets": [{"name": "rs", "rules": rules}],
        "devices": [{"name": "d", "rulesets": ["rs"]}],
    }
    fast = _parse(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Parser, "plain_rule", lambda self, item, path, index: None)
        general = _parse(data)
    assert fast == general


def test_plain_rule_parser_takes_the_database_shape():
    """The rules the console's database hands over take the plain path."""
    parser = Parser()
    rule = {
        "id": "0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1",
        "chain": "input",
        "action": "accept",
        "sources": ["198.18.0.0/24"],
        "destinations": ["198.18.1.1"],
        "protocol": "tcp",
        "dports": ["443", "8000-8080"],
        "comment": "web",
        "sources_negate": True,
    }
    assert parser.plain_rule(rule, "rulesets[rs]", 0) is not None
    assert parser.plain_rule({**rule, "log": True}, "rulesets[rs]", 1) is None


def _outcome(fn, value):
    """What `fn(value)` gives, or the words of its ValueError."""
    try:
        return fn(value)
    except ValueError as exc:
        return ("ValueError", str(exc))


_OCTET = st.one_of(
    st.integers(0, 255).map(str),
    st.sampled_from(["256", "00", "010", "1a", "", " ", "٣", "²", "0x1"]),
)
_V4_TEXT = st.builds(
    lambda octets, slash, plen, pad: f"{pad}{'.'.join(octets)}{slash}{plen}{pad}",
    st.lists(_OCTET, min_size=3, max_size=5),
    st.sampled_from(["", "/", "/", "/"]),
    st.one_of(
        st.integers(0, 33).map(str),
        st.sampled_from(["", "024", "-1", "x", "٣", "8 "]),
    ),
    st.sampled_from(["", " "]),
)


@given(st.one_of(_V4_TEXT, st.sampled_from(["198.18.0.0/15", "0.0.0.0/0", "198.18.0.1/32"])))
@settings(max_examples=600, deadline=None)
def test_ipv4_literal_fast_path_equals_ipaddress(text):
    """`nets.parse` (its IPv4 fast path first) gives what the ipaddress-based general path
    gives: the same blocks with the same texts, or the same error."""

    def general(text: str) -> tuple:
        return tuple(N.from_ipaddress(n) for n in V.address_networks(V.parse_address(text.strip())))

    def spelled(got: object) -> object:
        if isinstance(got, tuple) and got and isinstance(got[0], N.Net):
            return [(n.version, n.first, n.last, n.plen, n.text) for n in got]
        return got

    assert spelled(_outcome(N.parse, text)) == spelled(_outcome(general, text))


def test_ipv4_literal_fast_path_is_taken():
    """The frequent literals do take it (and the texts are reused as they are)."""
    (net,) = N._parse_v4("198.18.4.0/24")
    assert (net.first, net.plen, net.text) == (
        int(ipaddress.IPv4Address("198.18.4.0")),
        24,
        "198.18.4.0/24",
    )
    assert N._parse_v4("198.18.4.1") is not None
    assert N._parse_v4("198.18.4.1/24") is None  # host bits: the general path words it
    assert [n.text for n in N.parse("198.18.4.0/024")] == ["198.18.4.0/24"]  # canonical


@given(
    st.one_of(
        st.integers(-2, 70000),
        st.integers(0, 70000).map(str),
        st.sampled_from(["", " 80 ", "0", "65535", "65536", "080", "٣", "²", "1-2", "2-1", "x"]),
    )
)
@settings(max_examples=400, deadline=None)
def test_single_port_fast_path_equals_the_general_parse(value):
    """`parse_port`'s digits-only shortcut gives what the general code gives."""
    assert _outcome(V.parse_port, value) == _outcome(V._parse_port_text, str(value).strip())
