"""`CompileOptions`: the knobs of one compile."""

from __future__ import annotations

from dataclasses import dataclass

from ..values import check_limit_burst, parse_rate

# the ipset types every kernel Rampart supports has (since Linux 2.6.39 / ipset 6)
DEFAULT_SET_TYPES = frozenset({"hash:net", "hash:net,port"})


@dataclass(frozen=True)
class CompileOptions:
    """Knobs of the compiler.

    `ipset_threshold`: a source/destination list with more networks than this (per family)
    becomes an ipset. `forward_fallthrough`: for hosts where other software filters forwarded
    traffic (Docker, kube-proxy): a forward default of `accept` is not written, so a packet
    no rule decided returns to FORWARD and still meets DOCKER-USER / DOCKER-FORWARD /
    KUBE-FORWARD (an ACCEPT in RPT-FORWARD would skip Docker's isolation rules).
    `log_rate_limit`/`log_burst`: the rate limit of the LOG rule of a logging rule that sets
    no `rate_limit` of its own, so a flood cannot fill the log (None: log every packet);
    only the LOG rule is limited, never the verdict.
    `set_compile`: compile runs of rules into set lookups (lower/blocks.py; off: one kernel
    rule per rule, as before); `set_types`: the ipset types the device has (its facts), from
    which the set shapes are chosen; `set_min_rules`: a block's group of fewer rules than
    this stays kernel rules (a lookup pays off only for a few rules or more);
    `set_range_max`: a rule with a port range of more ports stays a kernel rule (ipset has
    no port ranges: a range is one element per port; above 65535 ranges are taken as one
    element each, for the native nftables dataplane, whose interval sets hold them);
    `set_guard_min`: a block's kernel rules that name source networks, if at least this
    many, go behind one lookup of all their networks (None: never);
    `set_elements_max`: a lookup set of more kernel elements is cut in 2, 4, 8... parts by
    rule (a change that deletes an element lists its whole set first, for the counts it
    loses; None: never).
    """

    ipset_threshold: int = 8
    forward_fallthrough: bool = False
    log_rate_limit: str | None = "10/minute"
    log_burst: int = 5
    set_compile: bool = False
    set_types: frozenset[str] = DEFAULT_SET_TYPES
    set_min_rules: int = 4
    set_range_max: int = 64
    set_guard_min: int | None = 16
    set_elements_max: int | None = 4096

    def __post_init__(self) -> None:
        if self.ipset_threshold < 1:
            raise ValueError("ipset_threshold must be at least 1")
        if self.set_min_rules < 1:
            raise ValueError("set_min_rules must be at least 1")
        if self.set_range_max < 1:
            raise ValueError("set_range_max must be at least 1")
        if self.set_elements_max is not None and self.set_elements_max < 1:
            raise ValueError("set_elements_max must be at least 1")
        if self.log_rate_limit is not None:
            # ValueError names the bad spelling, or a pair the kernel would refuse
            check_limit_burst(parse_rate(self.log_rate_limit), self.log_burst)
