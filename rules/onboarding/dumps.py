"""Parsers of `iptables-save` and `ipset save` text (pure: no Django, no I/O).

Only what onboarding needs is understood; every rule keeps its line number and text, and a
rule using anything else carries `error` saying why, so the translator can report it.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from compiler import per_source as PS
from compiler.per_source import PerSourceLimit

BUILTIN = ("INPUT", "FORWARD", "OUTPUT")
RATE_UNITS = {
    "sec": "second",
    "second": "second",
    "s": "second",
    "min": "minute",
    "minute": "minute",
    "m": "minute",
    "hour": "hour",
    "h": "hour",
    "day": "day",
    "d": "day",
}
PROTOCOLS = {
    "tcp": "tcp",
    "6": "tcp",
    "udp": "udp",
    "17": "udp",
    "icmp": "icmp",
    "1": "icmp",
    "ipv6-icmp": "icmpv6",
    "icmpv6": "icmpv6",
    "58": "icmpv6",
    "all": None,
    "0": None,
}
STATES = {"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"}
# Modules whose only effect is to enable options we read (or none at all).
# ICMPv6 types the receiver drops unless the hop limit is 255 (Linux's ndisc: 133-137,
# RFC 4861 §7.1.1; inverse ND 141/142, RFC 3122; SEND 148/149, RFC 3971), by number and
# by the names ip6tables knows: `-m hl --hl-eq 255` on them changes no verdict
ND_TYPES = {
    **{str(n): n for n in (133, 134, 135, 136, 137, 141, 142, 148, 149)},
    "router-solicitation": 133,
    "router-advertisement": 134,
    "neighbour-solicitation": 135,
    "neighbor-solicitation": 135,
    "neighbour-advertisement": 136,
    "neighbor-advertisement": 136,
    "redirect": 137,
}
LIMIT_MODULES = ("limit", "hashlimit")  # a token taken by each packet reaching them
PLAIN_MODULES = {
    "hl",  # --hl-eq 255 on neighbour discovery only (_RuleParser.hop_limit)
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "icmpv6",
    "multiport",
    "conntrack",
    "state",
    "comment",
    "set",
    "limit",
    "iprange",
    "recent",
    "hashlimit",
}


class Unsupported(ValueError):
    """A match or target with no equivalent in the policy document."""


@dataclass
class Match:
    """What a rule matches, in policy-document terms (None / () = not set)."""

    sources: tuple[str, ...] = ()
    sources_negate: bool = False
    destinations: tuple[str, ...] = ()
    destinations_negate: bool = False
    protocol: str | None = None
    dports: tuple[str, ...] = ()
    sports: tuple[str, ...] = ()
    icmp_type: str | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    states: frozenset[str] | None = None
    rate_limit: str | None = None
    burst: int | None = None
    per_source: PerSourceLimit | None = None  # -m hashlimit --hashlimit-upto, mode srcip

    def is_empty(self) -> bool:
        return self == Match()


@dataclass
class ParsedRule:
    line: int
    text: str
    table: str
    chain: str
    match: Match = field(default_factory=Match)
    target: str | None = None
    goto: bool = False
    target_args: dict[str, str] = field(default_factory=dict)
    comment: str = ""
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    # `-m recent` options (translate.py pairs a --set with its --update/--rcheck), and a
    # `--hashlimit-above` limit: both decide only in the patterns recent.py knows
    recent: dict[str, str] | None = None
    above: PerSourceLimit | None = None
    hashlimit: dict[str, str] = field(default_factory=dict)
    # `--ctstate …DNAT`: "only" (DNAT alone) or "also" (with the states in the match)
    ct_dnat: str | None = None
    # `--ctorigdstport P` / `--ctorigdst A` (shorewall's DNAT rules): "dport", "dst"
    ct_orig: dict[str, str] = field(default_factory=dict)


@dataclass
class Dump:
    """One iptables-save dump: chains (with policies and the line declaring them) and rules."""

    policies: dict[str, tuple[str, int]] = field(default_factory=dict)  # filter built-ins
    chains: dict[str, list[ParsedRule]] = field(default_factory=dict)  # filter table
    other_tables: list[ParsedRule] = field(default_factory=list)
    family: int = 4
    nat_chains: list[str] = field(default_factory=list)  # declared in the nat table
    bad_lines: list[tuple[int, str, str]] = field(default_factory=list)


def _address(text: str, family_hint: list[int]) -> str:
    net = ipaddress.ip_network(text, strict=False)
    family_hint.append(net.version)
    if net.num_addresses == 1:
        return str(net.network_address)
    return str(net)


def _ports(text: str) -> tuple[str, ...]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        out.append(f"{lo}-{hi}" if hi and hi != lo else lo)
    return tuple(out)


JUMPS = ("-j", "--jump", "-g", "--goto")
RECENT_ACTIONS = ("--set", "--update", "--rcheck", "--remove")


class _RuleParser:
    """The tokens of one rule after `-A CHAIN`, read left to right into a ParsedRule.

    One handler per option (OPTIONS); a leading `!` negates the next option, and the
    handlers of options the document cannot negate refuse it.
    """

    def __init__(self, tokens: list[str], rule: ParsedRule, family_hint: list[int]):
        self.tokens = tokens
        self.rule = rule
        self.m = rule.match
        self.hints = family_hint
        self.i = 0
        self.negate = False
        self.module = ""
        self.hl: str | None = None
        self.limits: tuple[str, ...] = ()  # the limit modules read so far, in order

    def value(self) -> str:
        if self.i + 1 >= len(self.tokens):
            raise Unsupported(f"{self.tokens[self.i]} without a value")
        self.i += 1
        return self.tokens[self.i]

    def no_negation(self, what: str) -> None:
        if self.negate:
            raise Unsupported(f"negated {what} ('! {what}') has no equivalent")

    def set_side(self, side: str, ref: str) -> None:
        setattr(self.m, side, (ref,))
        setattr(self.m, f"{side}_negate", self.negate)

    def run(self) -> None:
        tokens = self.tokens
        while self.i < len(tokens):
            tok = tokens[self.i]
            if tok == "!":
                self.negate = True
                self.i += 1
                continue
            if tok in JUMPS:
                self.jump(tok)
                break
            handler = OPTIONS.get(tok)
            if handler is None:
                where = f" of -m {self.module}" if self.module else ""
                raise Unsupported(f"option {tok}{where} has no equivalent")
            handler(self, tok)
            self.negate = False
            self.i += 1
        if self.negate:
            raise Unsupported("dangling '!'")
        if self.hl is not None:
            self.hop_limit_done()
        if self.m.burst is not None and self.m.rate_limit is None:
            raise Unsupported("--limit-burst without --limit")
        if self.rule.hashlimit:
            hashlimit_done(self.rule, self.hints)

    # ---- one handler per option
    def address(self, tok: str) -> None:
        side = "sources" if tok in ("-s", "--source") else "destinations"
        if getattr(self.m, side):
            raise Unsupported(f"matches the {side[:-1]} twice: the document ORs addresses")
        self.set_side(side, _address(self.value(), self.hints))

    def interface(self, tok: str) -> None:
        self.no_negation(tok)
        name = "in_interface" if tok in ("-i", "--in-interface") else "out_interface"
        setattr(self.m, name, self.value())

    def protocol(self, tok: str) -> None:
        self.no_negation(tok)
        proto = self.value().lower()
        if proto not in PROTOCOLS:
            raise Unsupported(f"protocol {proto} has no equivalent (tcp, udp, icmp, icmpv6)")
        self.m.protocol = PROTOCOLS[proto]

    def match_module(self, tok: str) -> None:
        self.no_negation(tok)
        self.module = self.value()
        if self.module not in PLAIN_MODULES:
            raise Unsupported(f"-m {self.module} has no equivalent in the policy document")
        self.limit_order(self.module)

    def limit_order(self, module: str) -> None:
        """Refuse a match after `-m limit`/`-m hashlimit`: on the host every packet that
        reaches the limit takes a token, also the packets the later match refuses, while
        Rampart's kernel rules test a rule's limits after its other matches (`rate_limit`
        before `rate_limit_per_source`), so the imported limit would count fewer packets."""
        before = self.limits
        if module in LIMIT_MODULES:
            self.limits += (module,)
        if not before or module == "comment" or (before, module) == (("limit",), "hashlimit"):
            return
        raise Unsupported(
            f"-m {module} after -m {before[-1]}: on the host every packet reaching the "
            f"limit takes a token, also those -m {module} then refuses; the document's limit "
            "counts only the packets matching the rest of the rule"
        )

    def ports(self, tok: str) -> None:
        self.no_negation(tok)
        key = "dports" if tok.startswith(("--d", "--destination")) else "sports"
        if getattr(self.m, key):
            raise Unsupported(f"{key} matched twice")
        setattr(self.m, key, _ports(self.value()))

    def either_ports(self, tok: str) -> None:
        raise Unsupported("multiport --ports (source or destination) has no equivalent")

    def state(self, tok: str) -> None:
        self.no_negation(tok)
        states = set(self.value().upper().split(","))
        if "DNAT" in states and self.rule.table == "filter":  # translate.py: ct_dnat_rules
            states.discard("DNAT")
            self.rule.ct_dnat = "also" if states else "only"
            if not states:
                return
        extra = states - STATES
        if extra:
            if not states & STATES:
                raise Unsupported(f"conntrack state {','.join(sorted(extra))} has no equivalent")
            self.rule.notes.append(
                f"conntrack state {','.join(sorted(extra))} left out (the document "
                f"knows {', '.join(sorted(s.lower() for s in STATES))})"
            )
        self.m.states = frozenset(s.lower() for s in states & STATES)

    def hop_limit(self, tok: str) -> None:
        """`-m hl --hl-eq 255`: kept for hop_limit_done (other hl tests: no equivalent)."""
        self.no_negation(tok)
        value = self.value()
        if tok != "--hl-eq" or value != "255":
            raise Unsupported(f"-m hl {tok} {value} has no equivalent")
        self.hl = value

    def hop_limit_done(self) -> None:
        """ufw's ND accepts: the hop limit test is the receiver's own (ND_TYPES), so the
        rule without it has the same verdicts; on anything else it has no equivalent."""
        kind = self.m.icmp_type
        if self.m.protocol != "icmpv6" or kind is None or kind.lower() not in ND_TYPES:
            raise Unsupported("-m hl --hl-eq 255 has no equivalent (but on neighbour discovery)")
        self.rule.notes.append(
            f"-m hl --hl-eq 255 left out: ICMPv6 type {kind} with another hop limit is "
            "dropped by the receiver itself (RFC 4861 §7.1.1, RFC 3122, RFC 3971)"
        )

    def ct_orig(self, tok: str) -> None:
        """The connection's original destination (before a DNAT): ctdnat.py."""
        self.no_negation(tok)
        self.rule.ct_orig["dport" if tok == "--ctorigdstport" else "dst"] = self.value()

    def comment(self, tok: str) -> None:
        self.rule.comment = self.value()

    def icmp_type(self, tok: str) -> None:
        self.no_negation(tok)
        kind = self.value()
        if "/" in kind:
            raise Unsupported(f"ICMP type/code {kind}: codes have no equivalent")
        self.m.icmp_type = None if kind == "any" else kind

    def match_set(self, tok: str) -> None:
        name, dirs = self.value(), self.value()
        if "," in dirs:
            raise Unsupported(f"--match-set {name} {dirs}: multi-dimension sets have no equivalent")
        side = "sources" if dirs == "src" else "destinations"
        if getattr(self.m, side):
            raise Unsupported(
                f"matches the {side[:-1]} twice (address and set): the document ORs addresses"
            )
        self.set_side(side, f"@set:{name}")

    def address_range(self, tok: str) -> None:
        side = "sources" if tok == "--src-range" else "destinations"
        first, _, last = self.value().partition("-")
        self.hints.append(ipaddress.ip_address(first).version)
        if getattr(self.m, side):
            raise Unsupported(f"matches the {side[:-1]} twice: the document ORs addresses")
        self.set_side(side, f"{first}-{last}")

    def limit(self, tok: str) -> None:
        self.no_negation(tok)
        count, _, unit = self.value().partition("/")
        if unit not in RATE_UNITS:
            raise Unsupported(f"rate unit {unit!r} has no equivalent")
        self.m.rate_limit = f"{count}/{RATE_UNITS[unit]}"

    def limit_burst(self, tok: str) -> None:
        self.m.burst = int(self.value())

    def recent(self, tok: str) -> None:
        """`-m recent` options, kept for the translator (recent.py)."""
        self.no_negation(tok)
        recent = self.rule.recent if self.rule.recent is not None else {}
        self.rule.recent = recent
        if tok in RECENT_ACTIONS:
            recent["action"] = tok[2:]
        elif tok in ("--rsource", "--rdest", "--reap"):
            recent[tok[2:]] = ""
        else:
            recent[tok[2:]] = self.value()

    def hashlimit_option(self, tok: str) -> None:
        """`-m hashlimit` options, read into a per-source limit once the rule is read."""
        self.no_negation(tok)
        key = "upto" if tok == "--hashlimit" else tok.removeprefix("--hashlimit-")
        self.rule.hashlimit[key] = self.value()

    def fragment(self, tok: str) -> None:
        raise Unsupported("fragment matches have no equivalent")

    def jump(self, tok: str) -> None:
        """The target and its options (`--log-prefix x`, `--reject-with y`): the rule's end."""
        self.rule.target = self.value()
        self.rule.goto = tok in ("-g", "--goto")
        rest = self.tokens[self.i + 1 :]
        j = 0
        while j < len(rest):
            key = rest[j]
            if j + 1 < len(rest) and not rest[j + 1].startswith("--"):
                self.rule.target_args[key] = rest[j + 1]
                j += 2
            else:
                self.rule.target_args[key] = ""
                j += 1


OPTIONS: dict[str, Callable[[_RuleParser, str], None]] = {
    **dict.fromkeys(("-s", "--source", "-d", "--destination"), _RuleParser.address),
    **dict.fromkeys(("-i", "--in-interface", "-o", "--out-interface"), _RuleParser.interface),
    **dict.fromkeys(("-p", "--protocol"), _RuleParser.protocol),
    **dict.fromkeys(("-m", "--match"), _RuleParser.match_module),
    **dict.fromkeys(
        (
            "--dport",
            "--destination-port",
            "--sport",
            "--source-port",
            "--dports",
            "--sports",
            "--destination-ports",
            "--source-ports",
        ),
        _RuleParser.ports,
    ),
    "--ports": _RuleParser.either_ports,
    **dict.fromkeys(("--ctstate", "--state"), _RuleParser.state),
    "--comment": _RuleParser.comment,
    **dict.fromkeys(("--ctorigdstport", "--ctorigdst"), _RuleParser.ct_orig),
    **dict.fromkeys(("--hl-eq", "--hl-lt", "--hl-gt"), _RuleParser.hop_limit),
    **dict.fromkeys(("--icmp-type", "--icmpv6-type"), _RuleParser.icmp_type),
    "--match-set": _RuleParser.match_set,
    **dict.fromkeys(("--src-range", "--dst-range"), _RuleParser.address_range),
    "--limit": _RuleParser.limit,
    "--limit-burst": _RuleParser.limit_burst,
    **dict.fromkeys(("-f", "--fragment"), _RuleParser.fragment),
    **dict.fromkeys(
        (
            *RECENT_ACTIONS,
            "--seconds",
            "--hitcount",
            "--name",
            "--mask",
            "--rsource",
            "--rdest",
            "--reap",
            "--rttl",
        ),
        _RuleParser.recent,
    ),
    **dict.fromkeys(
        (
            "--hashlimit",
            "--hashlimit-upto",
            "--hashlimit-above",
            "--hashlimit-burst",
            "--hashlimit-mode",
            "--hashlimit-name",
            "--hashlimit-srcmask",
            "--hashlimit-dstmask",
            "--hashlimit-htable-size",
            "--hashlimit-htable-max",
            "--hashlimit-htable-expire",
            "--hashlimit-htable-gcinterval",
            "--hashlimit-rate-match",
            "--hashlimit-rate-interval",
        ),
        _RuleParser.hashlimit_option,
    ),
}

_HASHLIMIT_IGNORED = ("name", "htable-size", "htable-max", "htable-expire", "htable-gcinterval")


def hashlimit_done(rule: ParsedRule, hints: list[int]) -> None:
    """A hashlimit match as the rule's per-source limit (`upto`) or its `above` limit; only
    mode srcip in packets per time has an equivalent. The table's own settings (size,
    expiry) and name are left out, with a note."""
    opts = rule.hashlimit
    mode = opts.get("mode", "")
    if mode != "srcip":
        raise Unsupported(
            f"-m hashlimit with mode {mode or 'none'} has no equivalent "
            "(rate_limit_per_source counts per source address: mode srcip)"
        )
    extra = sorted(set(opts) - {"upto", "above", "burst", "mode", "srcmask", *_HASHLIMIT_IGNORED})
    if extra:
        raise Unsupported(f"-m hashlimit --hashlimit-{extra[0]} has no equivalent")
    given = opts.get("upto") or opts.get("above") or ""
    count, _, unit = given.partition("/")
    unit = unit or "sec"
    if not count.isdecimal() or unit not in RATE_UNITS:
        raise Unsupported(f"hashlimit rate {given!r} has no equivalent (packets per time only)")
    family = 6 if 6 in hints and 4 not in hints else 4
    limit: dict = {"rate": f"{int(count)}/{RATE_UNITS[unit]}"}
    if "burst" in opts:
        limit["burst"] = int(opts["burst"])
    if "srcmask" in opts and int(opts["srcmask"]) != PS.PREFIX_MAX[family]:
        limit[f"ipv{family}_prefix"] = int(opts["srcmask"])
    try:
        parsed = PS.parse(limit)
    except ValueError as exc:
        raise Unsupported(f"-m hashlimit: {exc}") from None
    if "upto" in opts:
        rule.match.per_source = parsed
    else:
        rule.above = parsed
    left = sorted(set(opts) & set(_HASHLIMIT_IGNORED[1:]))
    if left:
        rule.notes.append(
            f"hashlimit {', '.join(left)} left out: the kernel's defaults apply to the table"
        )


def parse_rule(tokens: list[str], rule: ParsedRule, family_hint: list[int]) -> None:
    """Fill `rule` from the tokens after `-A CHAIN`; raises Unsupported naming the cause."""
    _RuleParser(tokens, rule, family_hint).run()


_COUNTERS = re.compile(r"^\[\d+:\d+\]\s+")


def _declare(dump: Dump, table: str, parts: list[str], number: int) -> None:
    """A `:CHAIN POLICY [counters]` line: the filter table's chains (with the built-ins'
    policies) and the nat table's chain names."""
    if not parts:
        return
    if table == "nat":
        dump.nat_chains.append(parts[0])
    if table == "filter":
        dump.chains.setdefault(parts[0], [])
        if parts[0] in BUILTIN and len(parts) > 1:
            dump.policies[parts[0]] = (parts[1], number)


def parse_iptables_save(text: str, family: int | None = None) -> Dump:
    """Parse a dump; the filter table's chains and rules, other tables' rules kept to report."""
    dump = Dump()
    table = ""
    hints: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            if "ip6tables-save" in line:
                hints.append(6)
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if line == "COMMIT":
            table = ""
            continue
        if line.startswith(":"):
            _declare(dump, table, line[1:].split(), number)
            continue
        body = _COUNTERS.sub("", line)
        try:
            tokens = shlex.split(body)
        except ValueError as exc:
            dump.bad_lines.append((number, raw, f"cannot be read: {exc}"))
            continue
        if len(tokens) < 2 or tokens[0] not in ("-A", "--append"):
            dump.bad_lines.append((number, raw, "not a rule (-A CHAIN ...) of iptables-save"))
            continue
        rule = ParsedRule(number, raw, table, tokens[1])
        try:
            parse_rule(tokens[2:], rule, hints if table == "filter" else [])
        except (Unsupported, ValueError) as exc:
            rule.error = str(exc)
            for flag, target in zip(tokens, tokens[1:], strict=False):
                if flag in JUMPS:
                    rule.target, rule.goto = target, flag in ("-g", "--goto")
        if table != "filter":  # parsed too: the nat table's rules are imported
            dump.other_tables.append(rule)
            continue
        dump.chains.setdefault(rule.chain, []).append(rule)
    dump.family = family or (6 if 6 in hints and 4 not in hints else 4)
    return dump


@dataclass
class IpSet:
    name: str
    type: str
    family: int
    line: int
    text: str
    members: list[str] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    add_lines: list[tuple[int, str]] = field(default_factory=list)


TRANSLATABLE_SETS = ("hash:ip", "hash:net", "list:set")


def parse_ipset_save(text: str) -> tuple[dict[str, IpSet], list[tuple[int, str, str]]]:
    """Sets of an `ipset save` dump, and the lines that cannot be used (line, text, reason)."""
    sets: dict[str, IpSet] = {}
    skipped: list[tuple[int, str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            skipped.append((number, raw, f"cannot be read: {exc}"))
            continue
        if tokens[0] == "create" and len(tokens) >= 3:
            opts = tokens[3:]
            family = 6 if "inet6" in opts else 4
            ipset = IpSet(tokens[1], tokens[2], family, number, raw)
            if ipset.type not in TRANSLATABLE_SETS:
                ipset.error = (
                    f"set type {ipset.type} has no equivalent (hash:ip, hash:net, list:set)"
                )
            if "timeout" in opts:
                ipset.notes.append("entries with a timeout are imported as permanent members")
            sets[ipset.name] = ipset
        elif tokens[0] == "add" and len(tokens) >= 3:
            target = sets.get(tokens[1])
            if target is None:
                skipped.append((number, raw, f"adds to set {tokens[1]!r}, which is not created"))
            else:
                target.add_lines.append((number, raw))
                if target.error:
                    continue  # the translator reports every line of a set it cannot use
                if "nomatch" in tokens[3:]:
                    target.error = "it has 'nomatch' exceptions, which have no equivalent"
                elif target.type == "list:set":
                    target.members.append(f"@set:{tokens[2]}")
                else:
                    try:
                        target.members.append(_address(tokens[2], []))
                    except ValueError as exc:
                        skipped.append((number, raw, f"not an address: {exc}"))
        else:
            skipped.append((number, raw, "not a create or add line of ipset save"))
    return sets, skipped
