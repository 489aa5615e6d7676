"""Stable ids for rules that have no `id`, derived from where the rule is."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

FALLBACK_NS = uuid.UUID("6f1d2c1e-55a4-4c43-9a43-5f0c0de0a11a")
_FALLBACK_NS_BYTES = FALLBACK_NS.bytes


def fallback_rule_id(ruleset: str, kind: str, index: int) -> str:
    """A stable id for a rule without `id`, derived from where it is.

    The same value as `uuid.uuid5(FALLBACK_NS, ...)`, spelled out because the uuid module
    takes ~20 µs a call and a 50k-rule policy needs 50k of them.
    """
    h = hashlib.sha1(_FALLBACK_NS_BYTES + f"{ruleset}/{kind}/{index}".encode()).hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def fallback_ids(ruleset: str, kind: str) -> Callable[[int], str]:
    """`fallback_rule_id(ruleset, kind, index)` as a function of index: the hash state of
    the common prefix is computed once (the compiler needs one id per rule)."""
    prefix = hashlib.sha1(_FALLBACK_NS_BYTES + f"{ruleset}/{kind}/".encode())

    def rule_id(index: int) -> str:
        digest = prefix.copy()
        digest.update(b"%d" % index)
        h = digest.hexdigest()
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"

    return rule_id
