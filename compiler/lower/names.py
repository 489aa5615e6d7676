"""Names of what lowering makes in the kernel: rule-set chains and ipsets."""

from __future__ import annotations

import hashlib

from ..ir import CHAIN_MAX
from ..resolve import Nets

CHAIN_LETTER = {"input": "I", "forward": "F", "output": "O"}


def short_hash(text: str, size: int = 4) -> str:
    return hashlib.blake2s(text.encode(), digest_size=size).hexdigest()


def ruleset_chain(ruleset: str, chain: str) -> str:
    """`RPT-I-<name, cut>-<8 hex>`: readable, unique, at most 28 characters."""
    name = f"RPT-{CHAIN_LETTER[chain]}-{ruleset[:13]}-{short_hash(ruleset)}"
    assert len(name) <= CHAIN_MAX
    return name


def set_name(family: int, nets: Nets) -> str:
    """Sets are named by content (see docs/bundle-format.md)."""
    digest = hashlib.blake2s(" ".join([n.text for n in nets]).encode(), digest_size=6).hexdigest()
    return f"rpt-{family}-{digest}"
