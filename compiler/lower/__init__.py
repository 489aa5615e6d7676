"""Policy → chains, in exactly the evaluation order of POLICY-FORMAT.md "Meaning".

Modules: static (the fixed steps: loopback, conntrack, ICMPv6 ND, anti-lockout, and the
management exemption from NAT),
rulesets (each rule set's own chains) with segments (long chains cut) and cache (kept
between compiles), nat (the nat table), expand (kernel rules of one policy rule), tags,
names, options, program (the device's `Program`, `lower_device`).

SEGMENT_MAX/SEGMENT_EVERY are read from the segments module at each compile: patch them
there (`compiler.lower.segments`), not here.
"""

from __future__ import annotations

from .cache import RULESET_CACHE, Built, RulesetCache
from .expand import MULTIPORT_MAX, Expander, port_chunks
from .names import ruleset_chain, set_name, short_hash
from .options import DEFAULT_SET_TYPES, CompileOptions
from .program import Lowerer, lower_device
from .segments import SEGMENT_EVERY, SEGMENT_MAX, segment_chain
from .static import ND_CHAINS, ND_HOP_LIMIT, ND_TYPES, fixed_rules, nat_exemption
from .tags import rule_tag, rule_tagger

__all__ = [
    "DEFAULT_SET_TYPES",
    "MULTIPORT_MAX",
    "ND_CHAINS",
    "ND_HOP_LIMIT",
    "ND_TYPES",
    "RULESET_CACHE",
    "SEGMENT_EVERY",
    "SEGMENT_MAX",
    "Built",
    "CompileOptions",
    "Expander",
    "Lowerer",
    "RulesetCache",
    "fixed_rules",
    "lower_device",
    "nat_exemption",
    "port_chunks",
    "rule_tag",
    "rule_tagger",
    "ruleset_chain",
    "segment_chain",
    "set_name",
    "short_hash",
]
