"""`CompileOptions`: the knobs of one compile."""

from __future__ import annotations

from dataclasses import dataclass

from ..values import check_limit_burst, parse_rate


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
    """

    ipset_threshold: int = 8
    forward_fallthrough: bool = False
    log_rate_limit: str | None = "10/minute"
    log_burst: int = 5

    def __post_init__(self) -> None:
        if self.ipset_threshold < 1:
            raise ValueError("ipset_threshold must be at least 1")
        if self.log_rate_limit is not None:
            # ValueError names the bad spelling, or a pair the kernel would refuse
            check_limit_burst(parse_rate(self.log_rate_limit), self.log_burst)
