"""IR → `iptables-restore` text: the only module that spells iptables.

Rules are written the way `iptables-save` prints them (`-m tcp` before `--dport`, quoted
comments, the REJECT default spelled out, `--limit-burst` only when not 5), so the agent
can compare its own chains in `iptables-save` output line by line with the bundle.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from .ir import DNAT, JUMP, LOG, REDIRECT, REJECT, SNAT, AddrMatch, Rule, Table
from .per_source import hashlimit_match
from .shared_limit import hashlimit_match as shared_hashlimit
from .values import REJECT_WITH_FAMILY, Rate, parse_log_prefix, parse_rate

_PROTO = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmpv6": "ipv6-icmp"}
_UNIT = {"second": "sec", "minute": "min", "hour": "hour", "day": "day"}
_STATE_ORDER = {"INVALID": 0, "NEW": 1, "RELATED": 2, "ESTABLISHED": 3, "UNTRACKED": 4, "DNAT": 5}
_REJECT = {
    4: "-j REJECT --reject-with icmp-port-unreachable",
    6: "-j REJECT --reject-with icmp6-port-unreachable",
}
_rates: dict[str, Rate] = {}


_PROTO_ARG = {name: f" -p {spelled}" for name, spelled in _PROTO.items()}
_PLAIN_TARGET = {"ACCEPT": " -j ACCEPT", "DROP": " -j DROP"}
# iptables-save (xtables_save_string) leaves a string of these alone, quotes any other and
# escapes these inside the quotes; iptables-restore reads a backslash as an escape
_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ESCAPE = str.maketrans({c: "\\" + c for c in "\"\\'"})
# `Rule.dst_type`: only the management exemption in the nat table sets it
_DST_TYPE = {None: "", "LOCAL": " -m addrtype --dst-type LOCAL"}


def _ports(ports: tuple[tuple[int, int], ...]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in ports)


def render_rule(chain: str, r: Rule, family: int) -> str:
    """One `-A` line.

    Built by appending to one string (CPython extends it in place) rather than joining a
    list of parts: this runs once per kernel rule, 50k times for a large policy.
    """
    src, dst, proto = r.src, r.dst, r.proto
    line = "-A " + chain
    set_matches = ""
    if r.lookup is not None:  # a set-compiled block's lookup (+ at most proto and ports)
        set_matches = f" -m set --match-set {r.lookup.name} {r.lookup.flags}"
    elif (src is not None and src.set_name is not None) or (
        dst is not None and dst.set_name is not None
    ):
        set_matches = _set_matches(src, dst)
    if src is not None and src.set_name is None:
        line += (" ! -s " if src.negate else " -s ") + src.nets[0].text  # nets.Net
    if dst is not None and dst.set_name is None:
        line += (" ! -d " if dst.negate else " -d ") + dst.nets[0].text
    if r.in_iface:
        line += " -i " + r.in_iface
    if r.out_iface:
        line += " -o " + r.out_iface
    if proto:
        line += _PROTO_ARG[proto]
        if proto == "tcp" or proto == "udp":
            sp, dp = r.sports, r.dports
            if not sp:
                if dp:  # the frequent case: destination ports only
                    if len(dp) == 1:
                        lo, hi = dp[0]
                        line += (
                            f" -m {proto} --dport {lo}"
                            if lo == hi
                            else f" -m {proto} --dport {lo}:{hi}"
                        )
                    else:
                        line += " -m multiport --dports " + _ports(dp)
            else:
                line += _port_matches(proto, sp, dp)
        elif r.icmp_type is not None:
            line += _icmp_match(proto, r.icmp_type, r.hop_limit)
    line += set_matches
    line += _DST_TYPE[r.dst_type]  # a lookup, not a branch: render_rule is at C901's limit
    if r.states or r.limit or r.until is not None or r.per_source is not None:
        line += _rare_matches(r, family)
    spelled = _PLAIN_TARGET.get(r.target)
    if spelled is None:
        spelled = _target(r, family)
    return f'{line} -m comment --comment "{r.tag}"{spelled}'


def _set_matches(src: AddrMatch | None, dst: AddrMatch | None) -> str:
    """`-m set` matches of a rule whose address list is an ipset (after the port matches,
    where iptables-save prints them)."""
    out = ""
    if src is not None and src.set_name is not None:
        out += f" -m set {'! ' if src.negate else ''}--match-set {src.set_name} src"
    if dst is not None and dst.set_name is not None:
        out += f" -m set {'! ' if dst.negate else ''}--match-set {dst.set_name} dst"
    return out


def _icmp_match(proto: str, icmp_type: int, hop_limit: int | None) -> str:
    if proto == "icmp":
        return f" -m icmp --icmp-type {icmp_type}"
    if hop_limit is not None:  # neighbour discovery: hop limit 255, never routed
        return f" -m icmp6 --icmpv6-type {icmp_type} -m hl --hl-eq {hop_limit}"
    return f" -m icmp6 --icmpv6-type {icmp_type}"


def _rare_matches(r: Rule, family: int) -> str:
    """Conntrack states, the rate limits and the time match (rare in policy rules: kept off
    the hot path)."""
    out = ""
    if r.states:
        out += " -m conntrack --ctstate " + ",".join(sorted(r.states, key=_STATE_ORDER.__getitem__))
    if r.shared_limit is not None and r.limit:  # the policy rule's one bucket
        out += shared_hashlimit(r.limit, r.burst, r.shared_limit)
    elif r.limit:
        rate = _rates.get(r.limit) or _rates.setdefault(r.limit, parse_rate(r.limit))
        out += f" -m limit --limit {rate.count}/{_UNIT[rate.unit]}"
        if r.burst is not None and r.burst != 5:
            out += f" --limit-burst {r.burst}"
    if r.per_source is not None:
        out += hashlimit_match(r.per_source[0], r.per_source[1], family)
    if r.until is not None:
        out += _time_match(r.until)
    return out


def _time_match(until: datetime) -> str:
    """`-m time --datestop`: xt_time (and iptables-nft's `meta time`) compare in UTC and
    keep matching through the whole datestop second, so the stop is the second before
    `until`."""
    stop = until.astimezone(UTC) - timedelta(seconds=1)
    return " -m time --datestop " + stop.strftime("%Y-%m-%dT%H:%M:%S")


def _target(r: Rule, family: int) -> str:
    """`-j …` for targets other than ACCEPT/DROP (jumps, REJECT, LOG, NAT)."""
    target = r.target
    if target == JUMP:
        return f" -j {r.arg}"
    if target == REJECT:
        if r.arg is None:
            return " " + _REJECT[family]
        return " -j REJECT --reject-with " + REJECT_WITH_FAMILY[family][r.arg]
    if target == LOG:
        # parse_log_prefix: what the kernel would not keep exactly is never written
        return " -j LOG --log-prefix " + _save_string(parse_log_prefix(str(r.arg)))
    if target == DNAT:
        return f" -j DNAT --to-destination {r.arg}"
    if target == SNAT:
        return f" -j SNAT --to-source {r.arg}"
    if target == REDIRECT:
        return " -j REDIRECT" + (f" --to-ports {r.arg}" if r.arg else "")
    return " -j " + target


def _port_matches(proto: str, sp: tuple, dp: tuple | None) -> str:
    """Port matches when source ports are given: `-m tcp` for single ports, then multiport."""
    single = []
    if len(sp) == 1:
        single.append("--sport " + _ports(sp))
    if dp and len(dp) == 1:
        single.append("--dport " + _ports(dp))
    out = f" -m {proto} " + " ".join(single) if single else ""
    if len(sp) > 1:
        out += " -m multiport --sports " + _ports(sp)
    if dp and len(dp) > 1:
        out += " -m multiport --dports " + _ports(dp)
    return out


def render_table(table: Table) -> tuple[str, dict[str, str]]:
    """The `*table … COMMIT` section and the sha256 of each owned chain's `-A` lines."""
    fam = table.family
    head = [f"*{table.name}"]
    head.extend(f":{name} - [0:0]" for name in table.chains)
    for builtin, rules in table.jumps.items():
        head.extend(render_rule(builtin, r, fam) for r in rules)
    parts = ["\n".join(head), "\n"]
    hashes = {}
    for name, chain in table.chains.items():
        done = chain.memo.get(fam)
        if done is None:
            text = "\n".join([render_rule(name, r, fam) for r in chain.rules]) + "\n"
            done = chain.memo[fam] = (text, hashlib.sha256(text.encode()).hexdigest())
        text, hashes[name] = done
        if chain.rules:
            parts.append(text)
    parts.append("COMMIT\n")
    return "".join(parts), hashes


def _save_string(text: str) -> str:
    """`text` as iptables-save spells it, which iptables-restore reads back as `text`: bare
    when plain, else in double quotes with `\\`, `"` and `'` escaped (a bare backslash
    would be taken as an escape and dropped: `a\\b` would load as `ab`)."""
    if text and set(text) <= _NO_QUOTE:
        return text
    return '"' + text.translate(_ESCAPE) + '"'
