"""IR → `iptables-restore` text: the only module that spells iptables.

Rules are written the way `iptables-save` prints them (`-m tcp` before `--dport`, quoted
comments, the REJECT default spelled out, `--limit-burst` only when not 5), so the agent
can compare its own chains in `iptables-save` output line by line with the bundle.
"""

from __future__ import annotations

import hashlib

from .ir import DNAT, JUMP, LOG, REJECT, SNAT, Rule, Table
from .values import Rate, parse_rate

_PROTO = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmpv6": "ipv6-icmp"}
_UNIT = {"second": "sec", "minute": "min", "hour": "hour", "day": "day"}
_STATE_ORDER = {"INVALID": 0, "NEW": 1, "RELATED": 2, "ESTABLISHED": 3, "UNTRACKED": 4}
_REJECT = {4: "-j REJECT --reject-with icmp-port-unreachable",
           6: "-j REJECT --reject-with icmp6-port-unreachable"}
_rates: dict[str, Rate] = {}


def _ports(ports: tuple[tuple[int, int], ...]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in ports)


def render_rule(chain: str, r: Rule, family: int) -> str:
    """One `-A` line."""
    p = ["-A", chain]
    src, dst = r.src, r.dst
    if src is not None and src.set_name is None:
        p.append(("! -s " if src.negate else "-s ") + str(src.nets[0]))
    if dst is not None and dst.set_name is None:
        p.append(("! -d " if dst.negate else "-d ") + str(dst.nets[0]))
    if r.in_iface:
        p.append("-i " + r.in_iface)
    if r.out_iface:
        p.append("-o " + r.out_iface)
    proto = r.proto
    if proto:
        p.append("-p " + _PROTO[proto])
        if proto == "tcp" or proto == "udp":
            sp, dp = r.sports, r.dports
            single = []
            if sp and len(sp) == 1:
                single.append("--sport " + _ports(sp))
            if dp and len(dp) == 1:
                single.append("--dport " + _ports(dp))
            if single:
                p.append(f"-m {proto} " + " ".join(single))
            if sp and len(sp) > 1:
                p.append("-m multiport --sports " + _ports(sp))
            if dp and len(dp) > 1:
                p.append("-m multiport --dports " + _ports(dp))
        elif r.icmp_type is not None:
            if proto == "icmp":
                p.append(f"-m icmp --icmp-type {r.icmp_type}")
            else:
                p.append(f"-m icmp6 --icmpv6-type {r.icmp_type}")
    if src is not None and src.set_name is not None:
        p.append(f"-m set {'! ' if src.negate else ''}--match-set {src.set_name} src")
    if dst is not None and dst.set_name is not None:
        p.append(f"-m set {'! ' if dst.negate else ''}--match-set {dst.set_name} dst")
    if r.states:
        p.append("-m conntrack --ctstate " + ",".join(sorted(r.states, key=_STATE_ORDER.get)))
    if r.limit:
        rate = _rates.get(r.limit) or _rates.setdefault(r.limit, parse_rate(r.limit))
        p.append(f"-m limit --limit {rate.count}/{_UNIT[rate.unit]}")
        if r.burst is not None and r.burst != 5:
            p.append(f"--limit-burst {r.burst}")
    p.append(f'-m comment --comment "{r.tag}"')
    target = r.target
    if target == JUMP:
        p.append("-j " + r.arg)
    elif target == REJECT:
        p.append(_REJECT[family])
    elif target == LOG:
        p.append(f'-j LOG --log-prefix "{r.arg}"')
    elif target == DNAT:
        p.append("-j DNAT --to-destination " + r.arg)
    elif target == SNAT:
        p.append("-j SNAT --to-source " + r.arg)
    else:
        p.append("-j " + target)
    return " ".join(p)


def render_table(table: Table) -> tuple[str, dict[str, str]]:
    """The `*table … COMMIT` section and the sha256 of each owned chain's `-A` lines."""
    fam = table.family
    lines = [f"*{table.name}"]
    lines.extend(f":{name} - [0:0]" for name in table.chains)
    for builtin, rules in table.jumps.items():
        lines.extend(render_rule(builtin, r, fam) for r in rules)
    hashes = {}
    for name, chain in table.chains.items():
        body = [render_rule(name, r, fam) for r in chain.rules]
        hashes[name] = hashlib.sha256(("\n".join(body) + "\n").encode()).hexdigest()
        lines.extend(body)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n", hashes
