"""IR → one `nft -f` script: the native nftables dataplane (as in Calico Felix's nft mode).

Everything Rampart owns lives in ONE table, `table inet rampart`, that the script deletes and
recreates in one transaction (`table inet rampart` + `delete table inet rampart` + the new
table): the kernel holds the old table or the new one, never a mix, and no other table
(Docker's, kube-proxy's, iptables-nft's `ip filter`, the admin's) is read or touched.

Mapping from the iptables-shaped IR:
- IPv4 and IPv6 tables share the inet table: every owned chain is named
  `<table><family>_<chain>` (`filter4_RPT-INPUT`), and the jump rules of the built-in
  chains land in one base chain per hook (`filter_input`, `nat_prerouting`...) behind
  `meta nfproto ipv4|ipv6`.
- Base chains run just before the iptables(-nft) ones of their hook (priority -10 for
  filter, -110 for dstnat, 90 for srcnat): a drop here is final, an accept lets the packet
  on to the other tables (nftables semantics: every table's base chain must accept).
- Every rule has a `counter` and a `comment` carrying the same tag as its iptables comment
  (`rpt:<uuid>:<hash>`), which is how the agent sums counters per rule and spots drift.
- IR sets become named interval sets (`type ipv4_addr; flags interval;`).
- Set-compiled blocks (`Rule.lookup`, ir.LookupSet) become concatenated interval sets over
  the set's dimensions (`ip saddr . meta l4proto . th dport . ip daddr`, ranges and CIDRs
  as they are) with a `counter` and the policy rule's tag as `comment` on every element:
  the agent sums element counters per rule (checked on this kernel: such sets load and
  count per element).
- `rate_limit` (`Rule.shared_limit`) is one named `limit` object per policy rule and
  family (`limit rpr…-4 { rate … }`, `render_limits`), named by each of its kernel rules
  (`limit name "rpr…-4"`); an inline `limit rate` is a bucket per kernel rule (the
  default log limit).
- `rate_limit_per_source` (`Rule.per_source`) is one dynamic set per policy rule and
  family (`set rps…-4 { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 60s; }`,
  `render_per_source_sets`) that each of its kernel rules updates with the source's
  bucket (`update @rps…-4 { ip saddr timeout 60s limit rate … }`): the kernel program of
  the former per-rule `meter` (dynset update, same timeout, same limit), with the set
  shared, so a source has one bucket in the whole policy rule as with hashlimit.
- `until` is `meta time < <epoch seconds>` (checked on this kernel: loads and matches; the
  integer form does not depend on the host's time zone, unlike the date string).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC
from operator import attrgetter

from rampart_contract.naming import NFT_TABLE

from .ir import (
    DNAT,
    JUMP,
    LOG,
    MASQUERADE,
    REDIRECT,
    REJECT,
    SNAT,
    IpSet,
    LookupSet,
    Program,
    Rule,
    Table,
)
from .per_source import BURST_DEFAULT as PS_BURST_DEFAULT
from .per_source import NFT_SET_SIZE, PREFIX_MAX, PerSourceLimit, nft_set_name
from .shared_limit import nft_name
from .values import parse_log_prefix, parse_rate

TABLE = NFT_TABLE
FAMILY = "inet"
# (IR table, built-in chain) -> (nft base chain, type, hook, priority): 10 before the
# iptables(-nft) chains of the hook (filter 0, dstnat -100, srcnat 100), as numbers because
# `dstnat` is not a valid name in the output hook

BASE_CHAINS = {
    ("filter", "INPUT"): ("filter_input", "filter", "input", "-10"),
    ("filter", "FORWARD"): ("filter_forward", "filter", "forward", "-10"),
    ("filter", "OUTPUT"): ("filter_output", "filter", "output", "-10"),
    ("nat", "PREROUTING"): ("nat_prerouting", "nat", "prerouting", "-110"),
    ("nat", "OUTPUT"): ("nat_output", "nat", "output", "-110"),
    ("nat", "POSTROUTING"): ("nat_postrouting", "nat", "postrouting", "90"),
}
_NFPROTO = {4: "ipv4", 6: "ipv6"}
_ADDR = {4: "ip", 6: "ip6"}
_SET_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
_L4 = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmpv6": "ipv6-icmp"}
# a lookup set's dimensions: the packet fields (key) and the nft types (set declaration)
_KEY = {"src": "{ip} saddr", "dst": "{ip} daddr", "dport": "meta l4proto . th dport"}
_DIM_TYPE = {"src": "{addr}", "dst": "{addr}", "dport": "inet_proto . inet_service"}
_PLAIN = {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return"}
_REJECT = {
    "icmp-port-unreachable": {4: "icmp type port-unreachable", 6: "icmpv6 type port-unreachable"},
    "icmp-host-unreachable": {4: "icmp type host-unreachable", 6: "icmpv6 type addr-unreachable"},
    "icmp-net-unreachable": {4: "icmp type net-unreachable", 6: "icmpv6 type no-route"},
    "icmp-admin-prohibited": {4: "icmp type admin-prohibited", 6: "icmpv6 type admin-prohibited"},
    "icmp-host-prohibited": {4: "icmp type host-prohibited", 6: "icmpv6 type admin-prohibited"},
    "icmp-net-prohibited": {4: "icmp type net-prohibited", 6: "icmpv6 type admin-prohibited"},
    "tcp-reset": {4: "tcp reset", 6: "tcp reset"},
}
_UNIT = {"second": "second", "minute": "minute", "hour": "hour", "day": "day"}
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_ZERO = {4: "0.0.0.0", 6: "::"}
_DEFAULT_BURST = 5  # iptables' `--limit-burst` default: said explicitly, nft's may differ
_VALUES, _TAG, _TEXT = attrgetter("values"), attrgetter("tag"), attrgetter("text")


def chain_name(family: int, table: str, chain: str) -> str:
    """The nft name of an owned IR chain (one inet table holds both families and tables)."""
    return f"{table}{family}_{chain}"


def _quote(text: str) -> str:
    """nft's scanner takes a quoted string verbatim up to the next `"`: no escapes (a
    doubled backslash stays doubled in the kernel), so a quote or line break cannot be
    written at all and is refused rather than let out of the string, and a `$` starts a
    variable (`nft -f` fails). values.py refuses all three in a log prefix (checked again
    when rendered, as render_iptables does); tags and interface names cannot hold them."""
    if '"' in text or "\n" in text or "$" in text:
        raise ValueError(f"no nft spelling for the string {text!r}")
    return f'"{text}"'


def _iface(name: str) -> str:
    """iptables' wildcard `eth+` is nft's `eth*`."""
    return _quote(name[:-1] + "*" if name.endswith("+") else name)


def _ports(ports: tuple[tuple[int, int], ...]) -> str:
    items = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _addr(family: int, field: str, match) -> str:  # noqa: ANN001 - ir.AddrMatch
    op = "!= " if match.negate else ""
    if match.set_name is not None:
        return f" {_ADDR[family]} {field} {op}@{match.set_name}"
    return f" {_ADDR[family]} {field} {op}{match.nets[0].text}"


def _lookup_key(family: int, lookup: LookupSet) -> str:
    """The packet fields a lookup set is keyed by, in its dimensions' order."""
    return " . ".join(_KEY[d].format(ip=_ADDR[family]) for d in lookup.dims)


def _element_items(lookup: LookupSet) -> list[str]:
    """One `value . value counter comment "tag"` item per element. The shapes with a port
    between two addresses or after one (ir.SHAPES) in one f-string per element (18k
    elements: ~10 ms instead of ~26 ms through a join per element), others a dimension
    at a time."""
    elements, l4 = lookup.elements, _L4
    joined = "".join(map(_TAG, elements))
    if '"' in joined or "\n" in joined:
        for e in elements:
            _quote(e.tag)  # says which one
    if lookup.dims[1:] == ("dport",):
        return [
            f'{a.text} . {l4[p.proto]} . {p.lo} counter comment "{tag}"'
            if p.lo == p.hi
            else f'{a.text} . {l4[p.proto]} . {p.lo}-{p.hi} counter comment "{tag}"'
            for (a, p), tag, _ in elements
        ]
    if len(lookup.dims) == 3 and lookup.dims[1] == "dport":
        return [
            f'{a.text} . {l4[p.proto]} . {p.lo} . {b.text} counter comment "{tag}"'
            if p.lo == p.hi
            else f'{a.text} . {l4[p.proto]} . {p.lo}-{p.hi} . {b.text} counter comment "{tag}"'
            for (a, p, b), tag, _ in elements
        ]
    transposed = zip(*map(_VALUES, elements), strict=True)  # one tuple per dimension
    columns = [_column(dim, values) for dim, values in zip(lookup.dims, transposed, strict=True)]
    keys = columns[0] if len(columns) == 1 else list(map(" . ".join, zip(*columns, strict=True)))
    return [
        f'{key} counter comment "{tag}"' for key, tag in zip(keys, map(_TAG, elements), strict=True)
    ]


def _column(dim: str, values: tuple) -> list[str]:
    """The texts of one dimension's values (a port dimension's `proto . port`, an address
    dimension's CIDR: ir.SHAPES says which is which)."""
    if dim != "dport":
        return list(map(_TEXT, values))  # nets.Net
    return [
        f"{_L4[p.proto]} . {p.lo}" if p.lo == p.hi else f"{_L4[p.proto]} . {p.lo}-{p.hi}"
        for p in values
    ]


def _all_tcp(lookup: LookupSet | None) -> bool:
    if lookup is None or "dport" not in lookup.dims or not lookup.elements:
        return False
    i = lookup.dims.index("dport")
    return all(e.values[i].proto == "tcp" for e in lookup.elements)


def render_lookup(lookup: LookupSet) -> list[str]:
    """A set-compiled block's set: one element per (rule, value combination), each with
    its own counter and its rule's tag."""
    types = " . ".join(_DIM_TYPE[d].format(addr=_SET_TYPE[lookup.family]) for d in lookup.dims)
    lines = [f"\tset {lookup.name} {{", f"\t\ttype {types}", "\t\tflags interval", "\t\tcounter"]
    if lookup.elements:
        elements = lookup.memo.get("nft")  # a warm compile reuses the set (render_ipset.py)
        if elements is None:
            items = _element_items(lookup)
            elements = lookup.memo["nft"] = (
                "\t\telements = {\n\t\t\t" + ",\n\t\t\t".join(items) + "\n\t\t}"
            )
        lines.append(elements)
    lines.append("\t}")
    return lines


def render_rule(r: Rule, family: int, table: str) -> str:
    """One nft rule statement (without the chain): matches, `counter`, verdict, comment."""
    out = ""
    if r.lookup is not None:
        if r.proto:  # the rule's own ports before the lookup: a part of a set cut by port
            # cell skips it with one comparison, and an element counts only packets its
            # rule takes (a "ports in the rule" set)
            out += _proto(r)
        out += f" {_lookup_key(family, r.lookup)} @{r.lookup.name}"
        if r.target == REJECT and r.arg == "tcp-reset" and r.proto is None and _all_tcp(r.lookup):
            out += " meta l4proto tcp"  # what `reject with tcp reset` needs said
    if r.src is not None:
        out += _addr(family, "saddr", r.src)
    if r.dst is not None:
        out += _addr(family, "daddr", r.dst)
    if r.in_iface:
        out += " iifname " + _iface(r.in_iface)
    if r.out_iface:
        out += " oifname " + _iface(r.out_iface)
    if r.proto and r.lookup is None:
        out += _proto(r)
    if r.dst_type == "LOCAL":
        out += " fib daddr type local"
    if r.states or r.until is not None or r.limit or r.per_source is not None:
        out += _rare(r, family)
    out += " counter " + _verdict(r, family, table)
    return out.lstrip() + " comment " + _quote(r.tag)


def _proto(r: Rule) -> str:
    """A port or type match implies its protocol (nft adds the dependency itself, and an
    explicit `meta l4proto` before it costs ~30 % of a 10k-rule load here)."""
    out = ""
    if r.proto in ("tcp", "udp"):
        if r.sports:
            out += f" {r.proto} sport {_ports(r.sports)}"
        if r.dports:
            out += f" {r.proto} dport {_ports(r.dports)}"
    elif r.icmp_type is not None:
        out += f" {'icmp' if r.proto == 'icmp' else 'icmpv6'} type {r.icmp_type}"
        if r.hop_limit is not None:
            out += f" ip6 hoplimit {r.hop_limit}"
    return out or " meta l4proto " + _L4[str(r.proto)]


def _rare(r: Rule, family: int) -> str:
    """Conntrack states, the time match and the rate limit (in iptables' order)."""
    out = ""
    if r.states == ("DNAT",):  # a conntrack status (the document allows it alone)
        out += " ct status dnat"
    elif r.states:
        out += " ct state " + ",".join(sorted(s.lower() for s in r.states))
    if r.until is not None:
        out += f" meta time < {int(r.until.astimezone(UTC).timestamp())}"
    if r.shared_limit is not None and r.limit:  # the policy rule's one bucket
        out += f' limit name "{nft_name(r.shared_limit, family)}"'
    elif r.limit:
        out += " limit " + _limit_rate(r.limit, r.burst)
    if r.per_source is not None:
        out += _per_source(r.per_source, family)
    return out


def _limit_rate(limit: str, burst: int | None) -> str:
    """`rate R/unit burst B packets`: an inline limit's settings, or a named one's."""
    rate = parse_rate(limit)
    return (
        f"rate {rate.count}/{_UNIT[rate.unit]} burst "
        f"{burst if burst is not None else _DEFAULT_BURST} packets"
    )


def _kernel_rules(program: Program) -> Iterator[tuple[int, Rule]]:
    """Every kernel rule of the program, base-chain jumps included, with its family."""
    for (family, _), table in program.tables.items():
        for rules in (*table.jumps.values(), *(c.rules for c in table.chains.values())):
            for r in rules:
                yield family, r


def render_limits(program: Program) -> list[str]:
    """The named `limit` objects the rules share (rate_limit: one per policy rule and
    family, shared_limit.py), one line each, in name order. They are recreated with the
    table, so a reload starts them full, as it does the inline limits."""
    found = {
        nft_name(r.shared_limit, family): _limit_rate(r.limit, r.burst)
        for family, r in _kernel_rules(program)
        if r.shared_limit is not None and r.limit
    }
    return [f"\tlimit {name} {{ {found[name]} }}" for name in sorted(found)]


def render_per_source_sets(program: Program) -> list[str]:
    """The dynamic sets of rate_limit_per_source (one per policy rule and family, its LOG
    twin's apart), one line each, in name order: the buckets every kernel rule of the
    rule takes tokens from. Recreated with the table, so a reload starts them empty (every
    source full), as it did the meters."""
    found = {
        nft_set_name(r.per_source[1], family): (
            f"type {_SET_TYPE[family]}; size {NFT_SET_SIZE}; "
            f"flags dynamic,timeout; timeout {_idle_seconds(r.per_source[0])}s;"
        )
        for family, r in _kernel_rules(program)
        if r.per_source is not None
    }
    return [f"\tset {name} {{ {found[name]} }}" for name in sorted(found)]


def _idle_seconds(limit: PerSourceLimit) -> int:
    """A source's entry expires after one unit of the rate without packets (each packet
    refreshes it: `update`), as hashlimit's do by default."""
    return _UNIT_SECONDS[parse_rate(limit.rate).unit]


def _per_source(per_source: tuple[PerSourceLimit, str], family: int) -> str:
    """rate_limit_per_source: ` update @set { key timeout … limit rate … }` into the policy
    rule's shared set, so all its kernel rules take a source's tokens from one bucket. The
    same kernel program as the former `meter` statement (a dynset `update` with the
    element timeout and the limit as its expression, checked with `nft --debug=netlink`
    on 1.0.6): the first packet of a source adds its entry full, every packet refreshes
    the timeout, a packet without a token does not match."""
    limit, bucket = per_source
    key = ("ip" if family == 4 else "ip6") + " saddr"
    prefix = limit.prefix(family)
    if prefix != PREFIX_MAX[family]:
        key += f" & {ipaddress.ip_network(f'{_ZERO[family]}/{prefix}').netmask}"
    rate = parse_rate(limit.rate)
    burst = limit.burst or PS_BURST_DEFAULT
    return (
        f" update @{nft_set_name(bucket, family)} {{ {key} timeout {_idle_seconds(limit)}s "
        f"limit rate {rate.count}/{_UNIT[rate.unit]} burst {burst} packets }}"
    )


def _verdict(r: Rule, family: int, table: str) -> str:
    target = r.target
    plain = _PLAIN.get(target)
    if plain is not None:
        return plain
    if target == JUMP:
        return "jump " + chain_name(family, table, str(r.arg))
    if target == REJECT:
        how = _REJECT[r.arg or "icmp-port-unreachable"][family]
        if how == "tcp reset" and r.proto != "tcp" and not _all_tcp(r.lookup):
            how = _REJECT["icmp-port-unreachable"][family]  # as ip(6)tables refuses it
        return "reject with " + how
    if target == LOG:
        return "log prefix " + _quote(parse_log_prefix(str(r.arg)))
    if target == DNAT:
        return f"dnat {_ADDR[family]} to {r.arg}"
    if target == SNAT:
        return f"snat {_ADDR[family]} to {r.arg}"
    if target == MASQUERADE:
        return "masquerade"
    if target == REDIRECT:
        return "redirect" + (f" to :{r.arg}" if r.arg else "")
    raise ValueError(f"no nft spelling for target {target!r}")


def render_set(s: IpSet) -> list[str]:
    # no auto-merge: the nets are disjoint already (collapsed), and merged neighbours
    # (198.18.4.10/31 + 198.18.4.12/30 -> one range) would not count as the bundle's entries
    lines = [f"\tset {s.name} {{", f"\t\ttype {_SET_TYPE[s.family]}", "\t\tflags interval"]
    if s.nets:
        lines.append("\t\telements = { " + ", ".join(n.text for n in s.nets) + " }")
    lines.append("\t}")
    return lines


def render_nft(program: Program) -> str:
    """The whole `nft -f` script: recreate `table inet rampart` in one transaction."""
    body: list[str] = []
    for name in sorted(program.sets):
        body += render_set(program.sets[name])
    for name in sorted(program.lookups):
        body += render_lookup(program.lookups[name])
    body += render_limits(program)
    body += render_per_source_sets(program)
    base: dict[str, list[str]] = {}
    owned: list[str] = []
    for (family, tname), table in sorted(program.tables.items()):
        _render_table(family, tname, table, base, owned)
    for name, kind, hook, prio in BASE_CHAINS.values():
        rules = base.get(name)
        if rules is None:
            continue
        body.append(f"\tchain {name} {{")
        body.append(f"\t\ttype {kind} hook {hook} priority {prio}; policy accept;")
        body += rules
        body.append("\t}")
    body += owned
    return (
        f"table {FAMILY} {TABLE}\n"
        f"delete table {FAMILY} {TABLE}\n"
        f"table {FAMILY} {TABLE} {{\n" + "\n".join(body) + "\n}\n"
    )


def _render_table(
    family: int, tname: str, table: Table, base: dict[str, list[str]], owned: list[str]
) -> None:
    nfproto = f"meta nfproto {_NFPROTO[family]} "
    for builtin, rules in table.jumps.items():
        if not rules:
            continue
        name = BASE_CHAINS[(tname, builtin)][0]
        base.setdefault(name, []).extend(
            "\t\t" + nfproto + render_rule(r, family, tname) for r in rules
        )
    for name, chain in table.chains.items():
        owned.append(f"\tchain {chain_name(family, tname, name)} {{")
        owned.extend("\t\t" + render_rule(r, family, tname) for r in chain.rules)
        owned.append("\t}")
