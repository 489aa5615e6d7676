"""Addresses for large groups in tests: only from the benchmarking range."""

from __future__ import annotations


def host(i: int) -> str:
    """The i-th IPv4 host of 198.18.0.0/15 (131,072 of them)."""
    return f"198.{18 + (i >> 16 & 1)}.{i >> 8 & 255}.{i & 255}"
