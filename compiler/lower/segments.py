"""Cutting a long rule-set chain into segment chains.

A rule set's chain longer than SEGMENT_MAX kernel rules is cut into segment chains that
its chain jumps to in order. Where to cut depends on the rules themselves (about 1 policy
rule in SEGMENT_EVERY, chosen by its uuid), never on positions: inserting or deleting a
rule changes one segment, and the agent rewrites or edits only that chain (with the nft
backend an edit costs with the size of the chain it touches).
"""

from __future__ import annotations

import zlib

from ..ir import JUMP, Chain
from ..ir import Rule as IRRule
from .names import CHAIN_LETTER, short_hash

SEGMENT_MAX = 1000
SEGMENT_EVERY = 256


def segment_chain(ruleset: str, chain: str, first_rule_id: str) -> str:
    """`RPT-I-<name, cut>-<12 hex>`: a segment of a long rule-set chain, named by the rule
    set and the rule it starts with (so it keeps its name while other segments change)."""
    return f"RPT-{CHAIN_LETTER[chain]}-{ruleset[:6]}-{short_hash(f'{ruleset}/{first_rule_id}', 6)}"


def segments(chain: Chain, ruleset: str, direction: str) -> list[Chain]:
    """`chain` itself if short enough; else a chain of jumps to its segments, then them.

    Segment rules are verdicts (and LOG), so falling off a segment's end returns to the
    next jump: the same first-match order as one long chain. A policy rule's kernel rules
    stay in one segment.
    """
    if len(chain.rules) <= SEGMENT_MAX:
        return [chain]
    pieces: list[list[IRRule]] = []
    current: list[IRRule] = []
    last_id: str | None = None
    crc32 = zlib.crc32
    for rule in chain.rules:
        # a rule set's kernel rules carry their rule id, a set lookup its own tag
        rid = rule.rule_id or rule.tag
        if (
            rid != last_id
            and current
            and (len(current) >= SEGMENT_MAX or crc32(rid.encode()) % SEGMENT_EVERY == 0)
        ):
            pieces.append(current)
            current = []
        current.append(rule)
        last_id = rid
    pieces.append(current)
    parts = [
        Chain(segment_chain(ruleset, direction, piece[0].rule_id or piece[0].tag), piece)
        for piece in pieces
    ]
    head = Chain(chain.name, [IRRule(JUMP, "rpt:jump", arg=part.name) for part in parts])
    return [head, *parts]
