"""Long rule-set chains are cut into segments where the rules say, not where positions fall:
same verdicts as one long chain, and one edited rule changes one segment."""

from __future__ import annotations

import itertools
import random
import uuid
import zlib
from unittest import mock

import pytest

from compiler import Packet, PolicyDocument, Tracer, compile_device
from compiler.ir import JUMP
from compiler.lower import segments as S
from compiler.lower.names import ruleset_chain

from . import cases


def big_ruleset(n: int, seed: int = 5) -> list[dict]:
    rnd = random.Random(seed)
    rules = []
    for i in range(n):
        net = f"198.18.{rnd.randrange(64)}.{rnd.randrange(256)}"
        rule = {
            "id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "chain": "input",
            "action": rnd.choice(["accept", "drop", "reject"]),
            "sources": [net],
            "protocol": rnd.choice(["tcp", "udp"]),
            "dports": [str(7000 + i % 40)],
        }
        if i % 97 == 0:
            rule["log"] = True  # two kernel rules (LOG, then the verdict): never split
        if i % 89 == 0:
            rule["sources"] = ["2001:2::/64"]
        rules.append(rule)
    return rules


def document(rules: list[dict]) -> dict:
    return {
        "version": 1,
        "rulesets": [{"name": "big-imported-set", "rules": rules}],
        "devices": [{"name": "fw", "rulesets": ["big-imported-set"]}],
    }


def compiled(rules: list[dict]):
    return compile_device(PolicyDocument.from_dict(document(rules)), "fw", now=cases.NOW)


def chains(bundle, family: str = "v4") -> dict[str, str]:
    return bundle.chains[family]["filter"]


def test_long_chain_becomes_a_chain_of_segments_in_the_same_order():
    rules = big_ruleset(3000)
    bundle = compiled(rules)
    program = bundle.program.tables[(4, "filter")]
    head = ruleset_chain("big-imported-set", "input")
    jumps = program.chains[head].rules
    assert all(r.target == JUMP and r.tag == "rpt:jump" for r in jumps)
    parts = [program.chains[j.arg].rules for j in jumps]
    assert len(parts) > 3 and all(0 < len(p) <= S.SEGMENT_MAX for p in parts)
    assert all(
        len(name) <= 28 and name.startswith("RPT-I-big-im-") for name in (j.arg for j in jumps)
    )
    with mock.patch.object(S, "SEGMENT_MAX", 10**9):
        whole = compiled(rules).program.tables[(4, "filter")].chains[head].rules
    assert [r for part in parts for r in part] == whole
    # a policy rule's kernel rules (LOG + verdict) are never split between two segments
    assert all(prev[-1].rule_id != part[0].rule_id for prev, part in itertools.pairwise(parts))
    assert len(bundle.iptables_v4.splitlines()) > 3000


def test_same_verdicts_as_one_long_chain():
    rules = big_ruleset(3000)
    segmented = Tracer(compiled(rules).program)
    with mock.patch.object(S, "SEGMENT_MAX", 10**9):
        whole = Tracer(compiled(rules).program)
    rnd = random.Random(1)
    for _ in range(400):
        packet = Packet.from_params(
            {
                "protocol": rnd.choice(["tcp", "udp"]),
                "source": f"198.18.{rnd.randrange(64)}.{rnd.randrange(256)}",
                "destination": "198.19.0.1",
                "dport": str(7000 + rnd.randrange(45)),
            }
        )
        a, b = segmented.trace(packet), whole.trace(packet)
        assert (a.verdict, a.rule_id, a.position) == (b.verdict, b.rule_id, b.position)


@pytest.mark.parametrize("edit", ["insert", "delete", "change"])
def test_one_edited_rule_changes_one_segment(edit):
    rules = big_ruleset(3000)
    before = chains(compiled(rules))
    edited = [dict(r) for r in rules]
    at = 1500
    if edit == "insert":
        edited.insert(
            at,
            {
                "chain": "input",
                "action": "drop",
                "sources": ["198.18.99.1"],
                "id": "0badc0de-0000-4000-8000-000000000001",
            },
        )
    elif edit == "delete":
        del edited[at]
    else:
        edited[at]["action"] = "accept" if edited[at]["action"] != "accept" else "drop"
    after = chains(compiled(edited))
    changed = {c for c in set(before) | set(after) if before.get(c) != after.get(c)}
    head = ruleset_chain("big-imported-set", "input")
    # only the segment holding the rule (the head of jumps and the rule set's positions in
    # the console's index change, the kernel rules of every other segment do not)
    assert changed == {changed_segment(before, after)}, changed
    assert head not in changed


def test_a_rule_that_starts_a_segment_changes_the_head_and_one_segment_more():
    rules = big_ruleset(3000)
    before = chains(compiled(rules))
    cut = next(
        str(uuid.UUID(int=i, version=4))
        for i in range(1, 10**6)
        if zlib.crc32(str(uuid.UUID(int=i, version=4)).encode()) % S.SEGMENT_EVERY == 0
    )
    edited = [
        *rules[:1500],
        {"id": cut, "chain": "input", "action": "drop", "sources": ["198.18.99.1"]},
        *rules[1500:],
    ]
    after = chains(compiled(edited))
    changed = {c for c in set(before) | set(after) if before.get(c) != after.get(c)}
    head = ruleset_chain("big-imported-set", "input")
    new = S.segment_chain("big-imported-set", "input", cut)
    assert head in changed and new in changed and new not in before
    assert len(changed) == 3, changed  # + the segment the new one was cut from


def changed_segment(before: dict, after: dict) -> str:
    (name,) = [c for c in before if c in after and before[c] != after[c]]
    return name


def test_short_rule_sets_stay_one_chain():
    bundle = compiled(big_ruleset(S.SEGMENT_MAX - 50))
    names = [c for c in chains(bundle) if c.startswith("RPT-I-")]
    assert names == [ruleset_chain("big-imported-set", "input")]
