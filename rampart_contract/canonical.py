"""Canonical JSON: one byte form for everything Rampart hashes or signs (bundle hashes,
request signatures, revision hashes, the audit chain). Sorted keys, no spaces, UTF-8."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def canonical_json(obj: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """The canonical UTF-8 bytes of `obj`; `default` as in json.dumps (e.g. str for dates)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default
    ).encode()


def canonical_text(obj: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """The same as text, for places that store or compare strings."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default
    )
