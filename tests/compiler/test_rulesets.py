"""Each rule set's own chains (compiler/lower/rulesets.py): rule order, what is left out,
where each rule came from, and sets for long address lists."""

from __future__ import annotations

import pytest

from compiler import CompileOptions, PolicyDocument, compile_device
from compiler.ir import ACCEPT, DROP
from compiler.lower import RULESET_CACHE, Expander, ruleset_chain
from compiler.lower.rulesets import RulesetLowerer
from compiler.resolve import Resolver

from . import cases
from .cases import compile_case

IDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(4)]


def lowerer(doc: PolicyDocument) -> RulesetLowerer:
    return RulesetLowerer(doc, cases.NOW, Resolver(doc), Expander(CompileOptions()))


def two_devices() -> PolicyDocument:
    rules = [
        {
            "id": IDS[0],
            "chain": "input",
            "action": "accept",
            "sources": ["198.18.0.1"],
            "protocol": "tcp",
            "dports": ["22"],
            "comment": "ssh",
        },
        {"id": IDS[1], "chain": "input", "action": "drop", "sources": ["198.18.0.0/24"]},
        {
            "id": IDS[2],
            "chain": "input",
            "action": "accept",
            "sources": ["2001:2::/64"],
            "log": True,
        },
        {"id": IDS[3], "chain": "output", "action": "drop", "destinations": ["198.18.9.9"]},
    ]
    return PolicyDocument.from_dict(
        {
            "version": 1,
            "rulesets": [{"name": "base", "rules": rules}, {"name": "other", "rules": []}],
            "devices": [
                {"name": "a", "rulesets": ["base"]},
                {"name": "b", "rulesets": ["other", "base"]},
            ],
        }
    )


def test_rules_keep_document_order_and_their_origin():
    lower = lowerer(two_devices())
    chains = lower.chains(lower.doc.ruleset("base"), 4)
    name = ruleset_chain("base", "input")
    assert [(r.target, r.rule_id) for r in chains[name].rules] == [
        (ACCEPT, IDS[0]),
        (DROP, IDS[1]),
    ]
    assert set(chains) == {name, ruleset_chain("base", "output")}  # no empty forward chain
    v6 = lower.chains(lower.doc.ruleset("base"), 6)[name].rules
    assert [r.target for r in v6] == ["LOG", ACCEPT]  # a logged rule: LOG, then its verdict
    assert lower.infos[IDS[0]] == ("base", 1, "ssh", "filter")
    assert lower.infos[IDS[3]].position == 4


def test_a_rule_set_has_the_same_chain_on_every_device():
    RULESET_CACHE.clear()
    doc = two_devices()
    one = compile_device(doc, "a", now=cases.NOW)
    RULESET_CACHE.clear()
    two = compile_device(doc, "b", now=cases.NOW)
    name = ruleset_chain("base", "input")
    assert one.chains["v4"]["filter"][name] == two.chains["v4"]["filter"][name]


def test_disabled_and_expired_rules_are_left_out():
    text = compile_case("example").iptables_v4
    assert "--dport 9000" not in text and "--dport 9001" not in text
    data = cases.example()
    before = compile_device(
        PolicyDocument.from_dict(data), "web-1", now=cases.NOW.replace(year=2019)
    )
    assert "--dport 9001" in before.iptables_v4 and "--dport 9000" not in before.iptables_v4


def test_groups_above_the_threshold_become_sets_per_family():
    bundle = compile_case("sets_and_ports")
    families = sorted(m["family"] for m in bundle.sets.values())
    assert families.count("inet") >= 1 and families.count("inet6") >= 1
    assert all(m["type"] == "hash:net" for m in bundle.sets.values())
    inline = compile_case("sets_and_ports", options=CompileOptions(ipset_threshold=100))
    assert "--match-set rpt-4" in inline.iptables_v4  # negated list: a set regardless
    assert "-m set --match-set" not in inline.iptables_v4  # positive lists are inlined


def _log_lines(options: CompileOptions | None = None, **rule) -> list[str]:
    data = cases.example()
    data["rulesets"][0]["rules"] = [
        {"chain": "input", "action": "accept", "protocol": "tcp", "dports": ["22"], "log": True}
        | rule
    ]
    text = compile_device(
        PolicyDocument.from_dict(data), "web-1", options=options, now=cases.NOW
    ).iptables_v4
    return [line for line in text.splitlines() if line.startswith("-A RPT-I-")]


def test_log_rules_are_rate_limited_by_default_and_the_verdict_never():
    log, verdict = _log_lines()
    assert "-m limit --limit 10/min -m comment" in log and "-j LOG" in log
    assert "-m limit" not in verdict
    # the rule's own limit applies to both, in buckets of their own, the default none
    log, verdict = _log_lines(rate_limit="3/second", burst=7)
    assert "--hashlimit-upto 3/sec --hashlimit-burst 7" in log and "-m limit" not in log
    assert "--hashlimit-upto 3/sec --hashlimit-burst 7" in verdict
    assert (
        log.split("--hashlimit-name ")[1].split()[0]
        == verdict.split("--hashlimit-name ")[1].split()[0] + "l"
    )
    # settable, and off when None
    log, _ = _log_lines(CompileOptions(log_rate_limit="1/hour", log_burst=2))
    assert "-m limit --limit 1/hour --limit-burst 2" in log
    log, _ = _log_lines(CompileOptions(log_rate_limit=None))
    assert "-m limit" not in log


def test_a_bad_log_rate_is_refused():
    with pytest.raises(ValueError, match="invalid rate"):
        CompileOptions(log_rate_limit="lots")
    with pytest.raises(ValueError, match="burst"):
        CompileOptions(log_burst=0)
