"""Single-object validation (compiler/validate.py): the document parser's checks and
wording, keyed by field, with names accepted unresolved."""

from __future__ import annotations

from hypothesis import given, settings

from compiler import DocumentError, PolicyDocument
from compiler.errors import UnknownName
from compiler.validate import NON_FIELD, assertion_errors, nat_errors, rule_errors

from .test_fast_paths import rule_dicts

NAMES = {"web", "grp", "v6host", "empty", "nosuch"}


def test_a_valid_rule_has_no_errors_and_names_need_not_exist():
    rule = {
        "chain": "input",
        "action": "accept",
        "sources": ["office", "198.18.0.0/24"],
        "destinations": ["web-servers"],
        "services": ["https"],
        "states": ["new"],
        "rate_limit": "10/second",
        "burst": 20,
        "expires_at": "2026-12-31T00:00:00Z",
    }
    assert rule_errors(rule) == {}


def test_errors_are_keyed_by_field_in_the_compilers_words():
    errors = rule_errors(
        {
            "chain": "output",
            "action": "allow",
            "in_interface": "eth0",
            "protocol": "tcp",
            "dports": ["80", "99999"],
            "burst": 5,
            "log_prefix": 'say "hi"',
            "expires_at": "soon",
            "colour": "red",
        }
    )
    assert errors == {
        "colour": ["unknown key"],
        "action": ["unknown action 'allow': one of accept, drop, reject"],
        "dports": ["port 99999 is out of range (1-65535)"],
        "in_interface": ["in_interface cannot be matched in chain output"],
        "log_prefix": errors["log_prefix"],
        "burst": ["burst needs rate_limit"],
        "expires_at": ["invalid date/time 'soon': use ISO 8601, e.g. 2026-12-31T00:00:00Z"],
    }
    assert errors["log_prefix"] and "quotes" in errors["log_prefix"][0]


def test_literals_are_checked_families_included():
    assert rule_errors(
        {
            "chain": "input",
            "action": "drop",
            "sources": ["198.18.0.1"],
            "destinations": ["2001:2::1"],
        }
    ) == {"destinations": ["sources are IPv4 only and destinations IPv6 only: no packet can match"]}
    assert rule_errors(
        {"chain": "input", "action": "drop", "sources": ["198.18.0.1"], "protocol": "icmpv6"}
    ) == {"protocol": ["the rule's addresses are IPv4 only but its protocol is for IPv6 only"]}
    # a name's family is unknown here: no mismatch can be claimed
    assert (
        rule_errors(
            {"chain": "input", "action": "drop", "sources": ["lan"], "destinations": ["2001:2::1"]}
        )
        == {}
    )
    bad = rule_errors({"chain": "input", "action": "drop", "sources": ["-not a name"]})
    assert list(bad) == ["sources"]


def test_required_fields_and_the_chain_given_apart():
    assert rule_errors({"action": "accept"}) == {"chain": ["is required"]}
    assert rule_errors({"action": "accept", "in_interface": "eth0"}, chain="input") == {}
    assert "in_interface" in rule_errors(
        {"action": "accept", "in_interface": "eth0"}, chain="output"
    )
    assert rule_errors("accept") == {NON_FIELD: ["must be a mapping"]}


def test_nat_rules():
    assert (
        nat_errors({"type": "dnat", "protocol": "tcp", "dports": ["80"], "to": "198.18.1.10:8080"})
        == {}
    )
    assert nat_errors({"type": "masquerade", "out_interface": "eth0", "sources": ["office"]}) == {}
    assert nat_errors({"type": "snat"}) == {"to": ["a snat rule needs `to`"]}
    assert nat_errors({"type": "dnat", "to": "198.18.0.1", "sources": ["2001:2::1"]}) == {
        "to": ["mixes IPv4 and IPv6 addresses: an IPv4 target for IPv6 sources and destinations"]
    }
    assert nat_errors(
        {
            "type": "dnat",
            "to": "198.18.0.1",
            "sources": ["2001:2::1"],
            "destinations": ["198.19.0.1"],
        }
    ) == {NON_FIELD: ["mixes IPv4 and IPv6 addresses"]}
    assert list(nat_errors({"type": "dnat", "chain": "postrouting", "to": "198.18.0.1"})) == [
        "chain"
    ]


def test_assertions():
    good = {
        "chain": "input",
        "protocol": "tcp",
        "source": "198.18.0.5",
        "destination": "198.18.1.10",
        "dport": 443,
        "expect": "accept",
    }
    assert assertion_errors(good) == {}
    assert assertion_errors({**good, "destination": "2001:2::1"}) == {
        "destination": ["source and destination are of different families"]
    }


def _document_errors(rule: dict) -> dict[str, list[str]]:
    """The whole-document parser's errors for `rule`, by field, unknown names left out."""
    data = {"version": 1, "rulesets": [{"name": "rs", "rules": [rule]}]}
    try:
        PolicyDocument.from_dict(data)
    except DocumentError as exc:
        out: dict[str, list[str]] = {}
        for e in exc.errors:
            if isinstance(e, UnknownName):
                continue
            rest = e.path.removeprefix("rulesets[rs].rules[0]").lstrip(".")
            key = rest.split("[", 1)[0] or NON_FIELD
            out.setdefault(key, []).append(e.message)
        return out
    return {}


def _as_list(value: object) -> list:
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, str) else []


@given(rule_dicts())
@settings(max_examples=300, deadline=None)
def test_same_verdict_and_words_as_the_document_parser(rule):
    """Without names among the addresses (whose families only a document knows), one rule
    is judged alike alone and inside a document."""
    refs = [r for key in ("sources", "destinations") for r in _as_list(rule.get(key))]
    if any(isinstance(r, int) or (isinstance(r, str) and r.strip() in NAMES) for r in refs):
        return  # an integer is read as a name ("7"), whose family only a document knows
    alone = {
        key: messages
        for key, messages in rule_errors(rule).items()
        if not all(m.startswith("unknown reference") for m in messages)
    }
    assert alone == _document_errors(rule)


def test_rates_and_bursts_the_kernel_refuses():
    """xt_limit: no faster than 10000/s; interval × burst within its 32-bit credits
    (checked against iptables-legacy on a real kernel: 1/hour takes burst 37, not 38)."""
    ok = {"chain": "input", "action": "accept"}
    assert rule_errors({**ok, "rate_limit": "10000/second", "burst": 10000}) == {}
    assert rule_errors({**ok, "rate_limit": "600000/minute"}) == {}
    assert rule_errors({**ok, "rate_limit": "1/day", "burst": 1}) == {}
    assert rule_errors({**ok, "rate_limit": "1/hour", "burst": 31}) == {}
    too_fast = rule_errors({**ok, "rate_limit": "50000/second"})
    assert list(too_fast) == ["rate_limit"] and "at most 10000/second" in too_fast["rate_limit"][0]
    assert list(rule_errors({**ok, "rate_limit": "600001/minute"})) == ["rate_limit"]
    assert list(rule_errors({**ok, "rate_limit": "1/day"})) == ["rate_limit"]  # iptables' burst 5
    assert list(rule_errors({**ok, "rate_limit": "1/hour", "burst": 38})) == ["burst"]
    assert list(rule_errors({**ok, "rate_limit": "1/second", "burst": 10001})) == ["burst"]


def test_interface_names_follow_the_kernel():
    ok = {"chain": "input", "action": "accept"}
    for name in ("eth0", "eth0123456789ab", "eth0123456789a+", "wg+", "br-lan.10"):
        assert rule_errors({**ok, "in_interface": name}) == {}, name
    for name in (
        "eth0123456789ab+",
        "eth0123456789abc",
        "a/b",
        "a b",
        "a\tb",
        ".",
        "..",
        "e+th",
        "+",
    ):
        assert list(rule_errors({**ok, "in_interface": name})) == ["in_interface"], name


def test_nat_names_resolve_through_families_when_given():
    fams = {"v4": frozenset({4}), "v6": frozenset({6}), "both": frozenset({4, 6})}
    nat = {"type": "dnat", "to": "198.18.1.10"}
    assert nat_errors({**nat, "sources": ["v6"]}) == {}  # unresolved: any family
    assert nat_errors({**nat, "sources": ["v4"]}, families=fams.get) == {}
    assert nat_errors({**nat, "sources": ["both"]}, families=fams.get) == {}
    assert list(nat_errors({**nat, "sources": ["v6"]}, families=fams.get)) == ["to"]
    unknown = nat_errors({**nat, "destinations": ["nosuch"]}, families=fams.get)
    assert list(unknown) == ["destinations"]
