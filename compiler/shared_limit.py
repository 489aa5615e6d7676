"""`rate_limit`: ONE token bucket per policy rule and family, shared by all its kernel rules.

A policy rule becomes several kernel rules (one per network or ipset of each side, per
protocol, per multiport chunk, per zone interface); xt_limit's and nft's inline `limit`
keep a bucket per kernel rule, which would let through that multiple of the rule's rate.
So the renderers name one bucket per rule and every kernel rule of it takes its tokens
there:

- iptables: xt_hashlimit without `--hashlimit-mode` (every packet falls in the table's
  one entry) and a table name per rule and limit, as `rate_limit_per_source` does
  (per_source.py: same naming rules, same name length);
- nft: a named `limit` object in Rampart's table, `limit name "…"` in the rules.

Pure: the bucket's name and its iptables spelling, so the lowering and both renderers
agree (POLICY-FORMAT.md, `rate_limit`).
"""

from __future__ import annotations

from .per_source import SCALE, hashlimit_name, interval_us, spelled_rate

BURST_DEFAULT = 5  # iptables' --limit-burst/--hashlimit-burst default: the document's too
# seconds of each unit iptables-save prints a hashlimit rate in (per_source._SPELLED)
_PRINTED_SECONDS = {"day": 86400, "hour": 3600, "min": 60, "sec": 1}


def bucket_name(rule_id: str, rate: str, burst: int | None, log: bool = False) -> str:
    """The rule's bucket (hashlimit table) name: stable for a rule and its limit, fresh
    when the limit changes (the kernel keeps a table's first settings while any rule names
    it, and a new table starts full). A LOG twin counts in a bucket of its own (`…l`): it
    sees the same packets with the same settings, so it decides as the rule does without
    taking the rule's tokens. `rpr` + 11 hex digits (+ `l`): at most 15 characters, the
    kernel's limit (per_source.NAME_MAX), and never one of per_source's `rpt…` names."""
    burst = BURST_DEFAULT if burst is None else burst
    return hashlimit_name("rpr", f"{rule_id}|{rate}|{burst}", log)


def expire_ms(rate: str, burst: int) -> int:
    """`--hashlimit-htable-expire`: the kernel forgets an entry idle this long and starts
    it again full. Never shorter than the time to refill the whole burst from empty, so
    an entry that expires was full anyway: the bucket means the same as one that never
    expires. Otherwise the default of the printed unit (one unit of the rate), which
    iptables-save leaves out."""
    printed = _PRINTED_SECONDS[spelled_rate(rate).partition("/")[2]] * 1000
    refill = -(-interval_us(rate) * burst // (SCALE // 1000))  # ceil(µs / 1000)
    return max(printed, refill)


def hashlimit_match(rate: str, burst: int | None, name: str) -> str:
    """` -m hashlimit …` for a shared bucket, as iptables-save prints it back (the rate in
    its printed unit, the burst always, the expiry only when not that unit's default), so
    the agent's readback equals the bundle on iptables-legacy and iptables-nft alike."""
    burst = BURST_DEFAULT if burst is None else burst
    spelled = spelled_rate(rate)
    out = (
        f" -m hashlimit --hashlimit-upto {spelled} --hashlimit-burst {burst} "
        f"--hashlimit-name {name}"
    )
    expire = expire_ms(rate, burst)
    if expire != _PRINTED_SECONDS[spelled.partition("/")[2]] * 1000:
        out += f" --hashlimit-htable-expire {expire}"
    return out


def nft_name(name: str, family: int) -> str:
    """The nft `limit` object of a bucket: one per family (Rampart's inet table holds
    both, while xt_hashlimit keeps a table per family under one name)."""
    return f"{name}-{family}"
