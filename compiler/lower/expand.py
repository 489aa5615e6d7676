"""The kernel rules of one policy rule in one family: the cross product of its
alternatives (addresses, protocols, multiport-sized port chunks); long address lists
become ipsets."""

from __future__ import annotations

from ..ir import ACCEPT, DROP, LOG, REJECT, AddrMatch, IpSet
from ..ir import Rule as IRRule
from ..resolve import FamilyMatch, Nets
from .names import set_name
from .options import CompileOptions

MULTIPORT_MAX = 15
TARGET = {"accept": ACCEPT, "drop": DROP, "reject": REJECT}


def port_chunks(ports: tuple[tuple[int, int], ...] | None) -> list | tuple:
    """Split a port list into multiport-sized pieces (max 15 slots, a range takes 2)."""
    if ports is None or len(ports) <= 7:
        return (ports,)
    chunks: list[tuple[tuple[int, int], ...]] = []
    current: list[tuple[int, int]] = []
    used = 0
    for lo, hi in ports:
        cost = 1 if lo == hi else 2
        if used + cost > MULTIPORT_MAX:
            chunks.append(tuple(current))
            current, used = [], 0
        current.append((lo, hi))
        used += cost
    chunks.append(tuple(current))
    return chunks


class Expander:
    """Expands policy rules of one compile; `sets` collects the ipsets they use."""

    def __init__(self, options: CompileOptions) -> None:
        self.options = options
        self.sets: dict[str, IpSet] = {}
        log_rate = options.log_rate_limit
        self._log_limit = (log_rate, options.log_burst if log_rate else None)

    def addr_options(self, family: int, nets: Nets | None, negate: bool) -> list:
        """The address matches to combine: one per network, or one set."""
        if nets is None:
            return [None]
        if len(nets) > self.options.ipset_threshold or (negate and len(nets) > 1):
            name = set_name(family, nets)
            if name not in self.sets:
                self.sets[name] = IpSet(name, family, nets)
            return [AddrMatch(nets, negate, name)]
        return [AddrMatch((net,), negate) for net in nets]

    def expand(
        self,
        fm: FamilyMatch,
        base: tuple,
        target: str,
        tag: str,
        rule_id: str | None,
        arg: str | None = None,
        log_prefix: str | None = None,
    ) -> list[IRRule]:
        """All kernel rules of one policy rule in one family (cross product of alternatives).

        `base` is (in_iface, out_iface, states, limit, burst).
        """
        in_if, out_if, states, limit, burst = base
        src, dst, protos = fm.src, fm.dst, fm.protos
        if (
            log_prefix is None
            and len(protos) == 1
            and (src is None or len(src) == 1)
            and (dst is None or len(dst) == 1)
        ):
            # the common case: one kernel rule, built without the loops below
            spec = protos[0]
            if (spec.sports is None or len(spec.sports) <= 7) and (
                spec.dports is None or len(spec.dports) <= 7
            ):
                return [
                    IRRule(
                        target,
                        tag,
                        None if src is None else AddrMatch(src, fm.src_negate),
                        None if dst is None else AddrMatch(dst, fm.dst_negate),
                        in_if,
                        out_if,
                        spec.protocol,
                        spec.sports,
                        spec.dports,
                        spec.icmp_type,
                        states,
                        limit,
                        burst,
                        arg,
                        rule_id,
                    )
                ]
        # the LOG rule keeps the rule's own limit, else the compile's default (never none
        # unless the options say so): a flood must not fill the log
        log_limit, log_burst = (limit, burst) if limit else self._log_limit
        srcs = self.addr_options(fm.family, fm.src, fm.src_negate)
        dsts = self.addr_options(fm.family, fm.dst, fm.dst_negate)
        out: list[IRRule] = []
        for spec in fm.protos:
            for s in srcs:
                for d in dsts:
                    for sp in port_chunks(spec.sports):
                        for dp in port_chunks(spec.dports):
                            if log_prefix is not None:
                                out.append(
                                    IRRule(
                                        LOG,
                                        tag,
                                        s,
                                        d,
                                        in_if,
                                        out_if,
                                        spec.protocol,
                                        sp,
                                        dp,
                                        spec.icmp_type,
                                        states,
                                        log_limit,
                                        log_burst,
                                        log_prefix,
                                        rule_id,
                                    )
                                )
                            out.append(
                                IRRule(
                                    target,
                                    tag,
                                    s,
                                    d,
                                    in_if,
                                    out_if,
                                    spec.protocol,
                                    sp,
                                    dp,
                                    spec.icmp_type,
                                    states,
                                    limit,
                                    burst,
                                    arg,
                                    rule_id,
                                )
                            )
        return out
