"""The analysis focused on one rule (the editor's live analysis) finds exactly the findings
naming that rule that the whole analysis finds, for every rule of random rule sets, alone
and on a device behind another rule set."""

from __future__ import annotations

import random

from compiler import PolicyDocument, analyse_device
from compiler.analysis import analyse_ruleset

from . import cases


def _rule(rng: random.Random, i: int) -> dict:
    rule: dict = {
        "id": f"00000000-0000-4000-8000-{i:012d}",
        "chain": rng.choice(["input", "input", "forward"]),
        "action": rng.choice(["accept", "drop", "reject"]),
    }
    if rng.random() < 0.8:
        rule["sources"] = [
            rng.choice(["198.18.0.0/22", "198.18.1.0/24", "198.18.1.64/26", "198.18.1.7"])
        ]
    if rng.random() < 0.7:
        rule["protocol"] = rng.choice(["tcp", "udp"])
        rule["dports"] = [rng.choice(["22", "80", "443", "20-30"])]
    return rule


def _naming(findings, rule_id: str) -> list[tuple]:
    return sorted(
        (f.kind, f.message) for f in findings if any(r.get("id") == rule_id for r in f.rules)
    )


def test_focus_finds_what_the_whole_analysis_says_about_the_rule():
    rng = random.Random(4)
    compared = 0
    for _ in range(6):
        mine = [_rule(rng, i) for i in range(25)]
        other = [_rule(rng, 100 + i) for i in range(10)]
        doc = PolicyDocument.from_dict(
            {
                "version": 1,
                "rulesets": [{"name": "base", "rules": other}, {"name": "mine", "rules": mine}],
                "devices": [
                    {
                        "name": "d",
                        "rulesets": ["base", "mine"],
                        "management_sources": ["198.18.0.1"],
                    }
                ],
            }
        )
        alone = analyse_ruleset(doc, "mine", now=cases.NOW)
        device = analyse_device(doc, "d", now=cases.NOW)
        for rule in mine:
            rid = rule["id"]
            focused = analyse_ruleset(doc, "mine", now=cases.NOW, focus=rid)
            assert _naming(focused, rid) == _naming(alone, rid)
            focused = analyse_device(doc, "d", now=cases.NOW, focus=rid)
            assert _naming(focused, rid) == _naming(device, rid)
            compared += len(_naming(device, rid))
    assert compared > 50  # the rule sets overlap enough to say something
