"""How an entry is sealed into the chain: its canonical bytes and its hash or keyed MAC.

Two chain versions live side by side. Entries written before the key existed (`PLAIN`)
carry SHA-256 over their canonical bytes; later ones (`KEYED`) carry HMAC-SHA256 with
the audit key over a version prefix and the same bytes. Both cover `prev_hash`, so the
first keyed entry chains onto the last plain one and the whole log stays one chain.
A keyed MAC cannot be recomputed from the database alone: editing an entry and
re-hashing everything after it no longer verifies.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC
from typing import Any

from rampart_contract.canonical import canonical_json

from .choices import AuditChain

HASHED_FIELDS = (
    "seq",
    "time",
    "actor",
    "user_id",
    "token",
    "action",
    "object_type",
    "object_id",
    "object_name",
    "before",
    "after",
    "changed",
    "reason",
    "ticket",
    "request_id",
    "client_ip",
    "user_agent",
    "channel",
    "extra",
    "prev_hash",
)
# Binds the chain version into the MAC: a keyed entry cannot pass as another version's.
KEYED_PREFIX = b"rampart-audit-chain-v2\n"


def canonical(entry: Any) -> bytes:
    """Sorted-key JSON of every hashed field (all but `hash`, `chain` and the row id)."""
    data: dict[str, Any] = {}
    for name in HASHED_FIELDS:
        value = getattr(entry, name)
        if name == "time":
            value = value.astimezone(UTC).isoformat()
        data[name] = value
    return canonical_json(data)


class ChainRow:
    """A (id, hash, chain, *HASHED_FIELDS) row with attribute access: verify skips models."""

    __slots__ = ("pk", "hash", "chain", *HASHED_FIELDS)
    COLUMNS = ("id", "hash", "chain", *HASHED_FIELDS)

    def __init__(self, row: tuple) -> None:
        for name, value in zip(self.__slots__, row, strict=True):
            setattr(self, name, value)


def entry_hash(entry: Any) -> str:
    """The plain chain's SHA-256 (entries written before the keyed chain)."""
    return hashlib.sha256(canonical(entry)).hexdigest()


def entry_mac(entry: Any, key: bytes) -> str:
    """The keyed chain's HMAC-SHA256."""
    return hmac.new(key, KEYED_PREFIX + canonical(entry), hashlib.sha256).hexdigest()


def seal_of(entry: Any, key: bytes) -> str:
    """What `entry.hash` must be for the entry's chain version."""
    if entry.chain == AuditChain.PLAIN:
        return entry_hash(entry)
    return entry_mac(entry, key)
