"""`rate_limit_per_source`: one token bucket per source address (xt_hashlimit, mode srcip).

Pure: parsing, the kernel's bounds, the bucket's name and its iptables spelling, so the
document parser, the renderer and onboarding agree. Meaning (POLICY-FORMAT.md): the rule
matches a packet only while its source's bucket has a token (taking one); a packet over
the limit does not match and falls through to the next rule, like `rate_limit`.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from . import values as V
from .values import RATE_RE

KEYS = ("rate", "burst", "ipv4_prefix", "ipv6_prefix")
BURST_DEFAULT = 5  # iptables' default --hashlimit-burst
BURST_MAX = 1_000_000  # iptables refuses more ("out of range (1-1000000)")
# xt_hashlimit (revision 2+) stores the interval between packets in microseconds
# (XT_HASHLIMIT_SCALE_v2): 0 is "Rate too fast", so at most 1000000/second.
SCALE = 1_000_000
SPAN_MAX_US = V.HASHLIMIT_SPAN_MAX_US  # interval × burst in µs (values.py says why)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
PREFIX_MAX = {4: 32, 6: 128}
NAME_MAX = 15  # the kernel's buffer for a hashlimit name (IFNAMSIZ), its NUL included
# nft: the sources one dynamic set (one policy rule and family) holds; a new source past
# it finds no bucket, so the rule does not match it (the packet falls through)
NFT_SET_SIZE = 65535


class PerSourceLimit(NamedTuple):
    """The document's `rate_limit_per_source` (None fields: the defaults)."""

    rate: str
    burst: int | None = None
    ipv4_prefix: int | None = None
    ipv6_prefix: int | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in zip(KEYS, self, strict=True) if v is not None}

    def prefix(self, family: int) -> int:
        """How many leading bits of the source select its bucket (the whole address)."""
        given = self.ipv4_prefix if family == 4 else self.ipv6_prefix
        return PREFIX_MAX[family] if given is None else given


def interval_us(rate: str) -> int:
    """Microseconds between packets, as xt_hashlimit stores the rate."""
    count, _, unit = rate.partition("/")
    return SCALE * _UNIT_SECONDS[unit] // int(count)


def _whole(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number {low}-{high}")
    return value


def parse(data: object) -> PerSourceLimit:
    """The limit from its document form; ValueError naming the first problem."""
    if not isinstance(data, dict):
        raise ValueError("must be a mapping: {rate: N/second|minute|hour|day, burst: N}")
    unknown = sorted(set(map(str, data)) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}: one of {', '.join(KEYS)}")
    rate = str(data.get("rate", "")).strip()
    match = RATE_RE.match(rate)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"rate {rate!r}: use N/second, N/minute, N/hour or N/day")
    if interval_us(rate) == 0:
        raise ValueError(f"rate {rate} is faster than the kernel allows: at most 1000000/second")
    burst = data.get("burst")
    if burst is not None:
        _whole(burst, 1, BURST_MAX, "burst")
    prefixes = []
    for family, key in ((4, "ipv4_prefix"), (6, "ipv6_prefix")):
        value = data.get(key)
        if value is not None:
            _whole(value, 1, PREFIX_MAX[family], key)
        prefixes.append(value)
    limit = PerSourceLimit(rate, burst, *prefixes)
    if interval_us(rate) * (burst or BURST_DEFAULT) > SPAN_MAX_US:
        most = SPAN_MAX_US // interval_us(rate)
        raise ValueError(
            f"rate {rate} with burst {burst or BURST_DEFAULT} overflows the kernel's "
            f"hashlimit match (interval × burst at most {SPAN_MAX_US // SCALE} s): use "
            + (f"a burst of at most {most}" if most else "a faster rate")
        )
    return limit


def bucket_name(rule_id: str, limit: PerSourceLimit, log: bool = False) -> str:
    """The hashlimit table's name: stable for a rule and its limit (a changed limit gets a
    fresh table: the kernel keeps a table's first settings for as long as any rule names
    it). A rule's LOG twin counts in a table of its own (`…l`): seeing the same packets
    with the same settings, it decides as the rule does without taking the rule's tokens."""
    return hashlimit_name("rpt", f"{rule_id}|{tuple(limit)}", log)


def hashlimit_name(prefix: str, key: str, log: bool) -> str:
    """A hashlimit table name: a 3-letter kind, 11 hex digits of `key`'s sha1, `l` for a
    LOG twin: at most 15 characters, the kernel's limit (NAME_MAX)."""
    digest = hashlib.sha1(key.encode(), usedforsecurity=False)
    return f"{prefix}{digest.hexdigest()[:11]}" + ("l" if log else "")


def nft_set_name(bucket: str, family: int) -> str:
    """The nft dynamic set holding a bucket's per-source entries: one per family (the
    inet table holds both, while xt_hashlimit keeps a table per family under one name).
    `rps` + the bucket's hex digits: never one of the `rpt-` lookup sets the agent reads
    as Rampart's ipsets."""
    return f"rps{bucket[3:]}-{family}"


_SPELLED = (("day", 86400), ("hour", 3600), ("min", 60), ("sec", 1))


def spelled_rate(rate: str) -> str:
    """The rate as iptables-save prints it (libxt_hashlimit's print_rate: 120/hour is
    printed 2/min), so the agent compares its rules line by line."""
    period = interval_us(rate)
    i = 1
    while i < len(_SPELLED):
        mult = _SPELLED[i][1] * SCALE
        if period > mult or mult // period < mult % period:
            break
        i += 1
    name, seconds = _SPELLED[i - 1]
    return f"{seconds * SCALE // period}/{name}"


def hashlimit_match(limit: PerSourceLimit, name: str, family: int) -> str:
    """` -m hashlimit …` in iptables-save's order (the burst always, the mask when not the
    whole address)."""
    out = (
        f" -m hashlimit --hashlimit-upto {spelled_rate(limit.rate)} --hashlimit-burst "
        f"{limit.burst or BURST_DEFAULT} --hashlimit-mode srcip --hashlimit-name {name}"
    )
    prefix = limit.prefix(family)
    if prefix != PREFIX_MAX[family]:
        out += f" --hashlimit-srcmask {prefix}"
    return out
