"""The bundle's format number and hash: the contract between the compiler, which writes
bundles (compiler/bundle.py), and the agent, which checks them (engine.py).

Standard library only, so that both sides import this one definition: the compiler without
the agent's dependencies, the agent without the console.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .canonical import canonical_json

BUNDLE_FORMAT = 2  # the format of a bundle without set lookups; stored format 1 still loads
# a bundle with set-compiled blocks (sets with counters and per-element comments, see
# docs/bundle-format.md): an agent that predates them refuses it rather than half-applying
SETS_BUNDLE_FORMAT = 3
ACCEPTED_FORMATS = (BUNDLE_FORMAT, SETS_BUNDLE_FORMAT)  # what agents take from the console
# The fields a bundle has (docs/bundle-format.md): those covered by its hash, in this order,
# plus `hash` and the console's own rule index `rules`, which the hash does not cover.
HASHED_BUNDLE_FIELDS = (
    "format",
    "device",
    "iptables_v4",
    "iptables_v6",
    "ipsets",
    "chains",
    "sets",
)
# Hashed after those, and only when present, so a bundle without them hashes as before:
# `nft`, the `nft -f` script for agents on the native nftables dataplane.
OPTIONAL_HASHED_BUNDLE_FIELDS = ("nft",)
BUNDLE_FIELDS = frozenset((*HASHED_BUNDLE_FIELDS, *OPTIONAL_HASHED_BUNDLE_FIELDS, "hash", "rules"))


def bundle_hash(bundle: Mapping[str, Any]) -> str:
    """sha256 hex over the bundle's hashed fields (docs/bundle-format.md, "Hashes").

    Field by field in a fixed order, each as `<key> <type> <length>\\n<bytes>`: a text field
    (the restore texts: megabytes for 50k rules) as `s` and its UTF-8 bytes, any other value
    (a missing field as null) as `j` and its canonical JSON (sorted keys, no spaces, UTF-8).
    A fixed list of fields and a type and length per field: no two different bundles frame
    to the same bytes. Hashing the texts as they are, rather than a JSON re-encoding of them,
    lets the agent check a 10k-rule bundle in ~1 ms instead of ~4 ms.
    """
    digest = hashlib.sha256()
    optional = [key for key in OPTIONAL_HASHED_BUNDLE_FIELDS if key in bundle]
    for key in (*HASHED_BUNDLE_FIELDS, *optional):
        value = bundle.get(key)
        if isinstance(value, str):
            kind, data = b"s", value.encode()
        else:
            kind, data = b"j", canonical_json(value)
        digest.update(b"%s %s %d\n" % (key.encode(), kind, len(data)))
        digest.update(data)
    return digest.hexdigest()
