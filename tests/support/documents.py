"""Comparing policy documents in tests."""

from __future__ import annotations

from compiler import PolicyDocument


def canonical(doc: dict) -> dict:
    """Canonical form; named entries sorted by name (their order carries no meaning)."""
    data = PolicyDocument.from_dict(doc).to_dict()
    for kind, items in data.items():
        if isinstance(items, list):
            data[kind] = sorted(items, key=lambda item: item["name"])
    return data
