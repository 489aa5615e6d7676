"""`nft -j list ruleset` → the parsed dumps the iptables-save translator walks (pure: no
Django).

nftables hosts (firewalld's default backend, plain nftables) have no iptables-save. Their
JSON is read into the same model, one `Dump` per family (an `inet` table's rules go to
both, a rule naming only one family's addresses or protocol to that one), so the very
walk that inlines iptables chains inlines nft's: base chains of type filter at the hooks
input/forward/output become INPUT/FORWARD/OUTPUT (several on one hook: jumped to in
priority order, with a note: an nft accept does not end the later base chains), base
chains of type nat at prerouting/output/postrouting the nat table's, regular chains keep
their rules (named `table/chain`). Matches on saddr/daddr (literals, prefixes, ranges,
anonymous and named sets), l4proto, ports, ICMP types, ct state and status dnat,
iifname/oifname, and the statements accept/drop/reject/jump/goto/return, log, limit,
counter (ignored), dnat/snat/masquerade/redirect are understood; anything else makes the
rule carry `error`, so it is reported with its verdict class like any iptables line.

Every item of the JSON array is accounted for by its position (`line`): a rule is
translated or skipped, a table, chain or set that cannot be used is reported. iptables-nft's
tables (`ip filter`, `ip nat`, … with `xt` expressions for what nft cannot say natively) are
recognised and said so: iptables-save reads those better.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from .dumps import BUILTIN, PROTOCOLS, STATES, Dump, IpSet, ParsedRule, Unsupported

_TARGETS = ("ACCEPT", "DROP", "REJECT", "RETURN", "LOG", "DNAT", "SNAT", "MASQUERADE", "REDIRECT")
FILTER_HOOKS = {"input": "INPUT", "forward": "FORWARD", "output": "OUTPUT"}
NAT_HOOKS = {"prerouting": "PREROUTING", "output": "OUTPUT", "postrouting": "POSTROUTING"}
FAMILIES = {"ip": (4,), "ip6": (6,), "inet": (4, 6)}
_IPTABLES_NFT = {("ip", "filter"), ("ip6", "filter"), ("ip", "nat"), ("ip6", "nat")}
_IPTABLES_NFT_CHAINS = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}
_ADDR_FAMILY = {"ip": 4, "ip6": 6}
_L4 = {"icmp": "icmp", "ipv6-icmp": "icmpv6", "icmpv6": "icmpv6", "tcp": "tcp", "udp": "udp"}
_REJECT = {  # nft's reject expr → iptables' --reject-with, per family
    4: {
        "port-unreachable": "icmp-port-unreachable",
        "host-unreachable": "icmp-host-unreachable",
        "net-unreachable": "icmp-net-unreachable",
        "admin-prohibited": "icmp-admin-prohibited",
        "host-prohibited": "icmp-host-prohibited",
        "net-prohibited": "icmp-net-prohibited",
    },
    6: {
        "port-unreachable": "icmp6-port-unreachable",
        "addr-unreachable": "icmp6-addr-unreachable",
        "host-unreachable": "icmp6-addr-unreachable",
        "no-route": "icmp6-no-route",
        "net-unreachable": "icmp6-no-route",
        "admin-prohibited": "icmp6-adm-prohibited",
    },
}
# a `limit` statement is one bucket taken by every packet reaching it; Rampart's kernel
# rules test a rule's limit after its other matches
LIMIT_BEFORE_MATCH = (
    "a match after a limit statement: on the host every packet reaching the limit takes a "
    "token, also those the match then refuses; the document's limit counts only the "
    "packets matching the rest of the rule"
)
RULE_NOTE = "nft item"  # how the report and the comments name a position


def looks_like_nft_json(text: str) -> bool:
    head = text.lstrip()[:2000]
    return head.startswith("{") and '"nftables"' in head


@dataclass
class NftRuleset:
    """What the JSON holds, ready for the translator."""

    dumps: dict[int, Dump] = field(default_factory=dict)
    sets: dict[int, dict[str, IpSet]] = field(default_factory=dict)
    skipped: list[tuple[int, str, str, str]] = field(default_factory=list)  # +impact
    notes: list[tuple[int, str, str]] = field(default_factory=list)
    families: set[int] = field(default_factory=set)


def _text(item: dict) -> str:
    """A rule as nft would say it (roughly), for the report."""
    rule = item.get("rule", {})
    where = f"{rule.get('family')} {rule.get('table')} {rule.get('chain')}"
    return f"{where}: " + " ".join(_say(e) for e in rule.get("expr", []))


def _say(stmt: dict) -> str:
    (key, value), *_ = stmt.items()
    if key == "match":
        return f"{_operand(value['left'])} {value['op']} {_operand(value['right'])}"
    if value is None:
        return key
    if key in ("jump", "goto"):
        return f"{key} {value.get('target')}"
    return f"{key} {json.dumps(value, separators=(',', ':'))}"


def _operand(value: object) -> str:
    if isinstance(value, dict):
        (key, inner), *_ = value.items()
        if key == "payload":
            return f"{inner.get('protocol')} {inner.get('field')}"
        if key in ("meta", "ct"):
            return f"{key} {inner.get('key')}"
        if key == "prefix":
            return f"{inner['addr']}/{inner['len']}"
        if key == "range":
            return "-".join(str(x) for x in inner)
        if key == "set":
            return "{ " + ", ".join(_operand(x) for x in inner) + " }"
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# the keys nft always writes, as strings, per object kind (`hook`, `type` when given)
_REQUIRED = {
    "table": ("family", "name"),
    "chain": ("family", "table", "name"),
    "set": ("family", "table", "name"),
    "map": ("family", "table", "name"),
    "rule": ("family", "table", "chain"),
}


def _malformed(kind: str, body: object) -> str | None:
    """Why an item is not an nft object of its kind (None: it is one): a shape nft never
    writes is reported as such, not read into a crash."""
    keys = _REQUIRED.get(kind)
    if keys is None:
        return None
    if not isinstance(body, dict):
        return f"not an nft {kind} (not an object)"
    for key in (*keys, *(k for k in ("hook", "type") if k in body)):
        if not isinstance(body.get(key), str):
            return f"not an nft {kind}: {key} must be a string"
    if "prio" in body and (not isinstance(body["prio"], int) or isinstance(body["prio"], bool)):
        return f"not an nft {kind}: prio must be a number"
    if kind == "rule" and not isinstance(body.get("expr", []), list):
        return "not an nft rule: expr must be a list"
    return None


class _Reader:
    """Reads the JSON array item by item into `NftRuleset`."""

    def __init__(self, items: list) -> None:
        self.items = items
        self.out = NftRuleset()
        self.tables: dict[tuple[str, str], int] = {}
        self.chains: dict[tuple[str, str, str], dict] = {}  # (family, table, name) → chain
        self.named_sets: dict[tuple[str, str, str], dict] = {}
        self.rules: dict[tuple[str, str, str], list[tuple[int, dict]]] = {}

    def run(self) -> NftRuleset:
        for line, item in enumerate(self.items, start=1):
            if not isinstance(item, dict) or len(item) != 1:
                self.out.skipped.append(
                    (line, str(item)[:200], "not an nft object", "verdict-neutral")
                )
                continue
            (kind, body), *_ = item.items()
            if kind == "metainfo":
                continue
            malformed = _malformed(kind, body)
            if malformed:
                self.out.skipped.append((line, str(item)[:200], malformed, "verdict-neutral"))
                continue
            family = body.get("family", "") if isinstance(body, dict) else ""
            if kind in ("table", "chain", "rule", "set", "map") and family not in FAMILIES:
                self.out.skipped.append(
                    (
                        line,
                        f"{kind} {family} {body.get('table', body.get('name', ''))}",
                        f"family {family}: only ip, ip6 and inet tables are imported",
                        "verdict-neutral",
                    )
                )
                continue
            if kind == "table":
                self.tables[(family, body["name"])] = line
                if (family, body["name"]) in _IPTABLES_NFT:
                    self.out.notes.append(
                        (
                            line,
                            f"table {family} {body['name']}",
                            f"table {family} {body['name']} is iptables-nft's (the iptables "
                            "command on an nftables kernel): `iptables-save` shows its rules "
                            "with every match, `xt` expressions included — onboard that dump",
                        )
                    )
            elif kind == "chain":
                self.chains[(family, body["table"], body["name"])] = {**body, "line": line}
            elif kind == "set":
                self.named_sets[(family, body["table"], body["name"])] = {**body, "line": line}
            elif kind == "rule":
                key = (family, body["table"], body["chain"])
                self.rules.setdefault(key, []).append((line, item))
            else:
                self.out.skipped.append(
                    (line, kind, f"nft {kind} objects have no equivalent", "verdict-neutral")
                )
        for fam in (4, 6):
            self.build(fam)
        return self.out

    def name(self, family: str, table: str, name: str) -> str:
        """A chain's name in the dump: its own where that is unambiguous (Docker's chains
        stay recognisable), `table/name` for base chains and names two tables use."""
        chain = self.chains.get((family, table, name), {})
        clash = [k for k in self.chains if k[2] == name and k[:2] != (family, table)]
        if chain.get("hook") or clash or name in (*BUILTIN, *NAT_HOOKS.values()):
            return f"{table}/{name}"
        return name

    # ---- one family's dump
    def build(self, fam: int) -> None:
        dump = Dump(family=fam)
        sets: dict[str, IpSet] = {}
        bases: dict[tuple[str, str], list[tuple[int, str, dict]]] = {}
        for (family, table, name), chain in self.chains.items():
            if fam not in FAMILIES[family]:
                continue
            full = self.name(family, table, name)
            hook, ctype = chain.get("hook"), chain.get("type")
            if hook is not None:
                builtin = (
                    FILTER_HOOKS if ctype == "filter" else NAT_HOOKS if ctype == "nat" else {}
                ).get(hook)
                if builtin is None:
                    if fam == min(FAMILIES[family]):
                        self.out.skipped.append(
                            (
                                chain["line"],
                                f"chain {family} {table} {name}",
                                f"a base chain of type {ctype} at hook {hook}: the document's "
                                "chains are input, forward, output (filter) and the nat hooks",
                                "verdict-neutral",
                            )
                        )
                    kind = f"{ctype}-{hook}"
                else:
                    kind = "filter" if ctype == "filter" else "nat"
                    bases.setdefault((kind, builtin), []).append(
                        (chain.get("prio", 0), full, chain)
                    )
            dump.chains.setdefault(full, [])
            for line, item in self.rules.get((family, table, name), []):
                for rule in self.rule(line, item, fam, family, table, full):
                    dump.chains[full].append(rule)
        self.chain_tables(dump)
        self.base_chains(dump, bases)
        for (family, table, name), body in self.named_sets.items():
            if fam in FAMILIES[family]:
                ipset = self.ipset(body, fam, table, name)
                if ipset is not None:
                    sets[ipset.name] = ipset
        has_rules = any(dump.chains.values()) or dump.other_tables
        if has_rules:
            self.out.families.add(fam)
        self.out.dumps[fam] = dump
        self.out.sets[fam] = sets

    def chain_tables(self, dump: Dump) -> None:
        """Move the chains reached from nat base chains into the nat table (other_tables),
        as iptables-save lists them."""
        nat_bases = [
            self.name(fam, t, n)
            for (fam, t, n), c in self.chains.items()
            if c.get("type") == "nat" and c.get("hook") in NAT_HOOKS
        ]
        reached, todo = set(nat_bases), list(nat_bases)
        while todo:
            for rule in dump.chains.get(todo.pop(), []):
                if rule.target and rule.target not in reached and rule.target in dump.chains:
                    reached.add(rule.target)
                    todo.append(rule.target)
        others = {
            self.name(fam, t, n): f"{c.get('type')}-{c.get('hook')}"
            for (fam, t, n), c in self.chains.items()
            if c.get("hook") is not None
            and not (c.get("type") == "filter" and c.get("hook") in FILTER_HOOKS)
            and not (c.get("type") == "nat" and c.get("hook") in NAT_HOOKS)
        }
        for name in list(dump.chains):
            if name in reached or name in others:
                for rule in dump.chains.pop(name):
                    rule.table = "nat" if name in reached else others[name]
                    dump.other_tables.append(rule)
                if name in reached:
                    dump.nat_chains.append(name)

    def base_chains(self, dump: Dump, bases: dict) -> None:
        """INPUT, FORWARD, OUTPUT (and the nat hooks) jump to their base chains in
        priority order; the policy is the strictest of theirs."""
        for (kind, builtin), chains in sorted(bases.items()):
            chains.sort(key=lambda c: c[0])
            policy = "ACCEPT"
            for prio, full, chain in chains:
                jump = ParsedRule(
                    chain["line"],
                    f"chain {chain['family']} {full} (hook {chain['hook']}, priority {prio})",
                    kind,
                    builtin,
                    target=full,
                )
                if kind == "nat":
                    dump.other_tables.append(jump)
                else:
                    dump.chains.setdefault(builtin, []).append(jump)
                    dump.chains.setdefault(full, [])
                if chain.get("policy") == "drop":
                    policy = "DROP"
                    if kind == "filter" and chain is not chains[-1][2]:
                        # an earlier base chain's drop policy ends every packet it did not
                        # accept: the later ones see only what it accepted
                        end = ParsedRule(chain["line"], jump.text, kind, builtin, target="DROP")
                        dump.chains[builtin].append(end)
            if kind == "filter":
                dump.policies[builtin] = (policy, chains[-1][2]["line"])
            if len(chains) > 1:
                self.out.notes.append(
                    (
                        chains[1][2]["line"],
                        f"base chains at hook {builtin.lower()}",
                        f"{len(chains)} base chains at hook {builtin.lower()}: nftables runs "
                        "each of them (an accept ends only its own), the rule set runs them "
                        "as one, in priority order: a packet an earlier one accepts is no "
                        "longer seen by a later one's drop",
                    )
                )

    def ipset(self, body: dict, fam: int, table: str, name: str) -> IpSet | None:
        kind = body.get("type")
        line = body["line"]
        ipset = IpSet(
            f"{table}/{name}", "hash:net", fam, line, f"set {body.get('family')} {table} {name}"
        )
        want = {4: "ipv4_addr", 6: "ipv6_addr"}[fam]
        if kind not in ("ipv4_addr", "ipv6_addr"):
            return None  # port and other sets are inlined where they are used
        if kind != want:
            return None
        for elem in body.get("elem", []) or []:
            try:
                ipset.members.extend(_addresses(elem, fam))
            except Unsupported as exc:
                ipset.error = str(exc)
        if body.get("timeout") or "timeout" in (body.get("flags") or []):
            ipset.notes.append("entries with a timeout are imported as permanent members")
        return ipset

    # ---- one rule
    def rule(
        self, line: int, item: dict, fam: int, family: str, table: str, chain: str
    ) -> list[ParsedRule]:
        """The rule as one family sees it (none: it matches only the other family; two:
        a LOG and the verdict, when it logs and decides)."""
        body = item["rule"]
        try:
            text = _text(item)
        except (KeyError, TypeError, ValueError, AttributeError):
            text = json.dumps(item, separators=(",", ":"))[:200]
        rule = ParsedRule(line, text, "filter", chain, comment=str(body.get("comment", "")))
        families = {fam}
        try:
            for stmt in body.get("expr", []):
                self.statement(rule, stmt, fam, table, families)
                if not families:
                    break
        except Unsupported as exc:
            rule.error = str(exc)
            _verdict_of(rule, body.get("expr", []))  # ranks the loss by what it did
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            rule.error = f"cannot be read: {exc!r}"
        if not families:
            return []
        if rule.target is not None and rule.target not in _TARGETS:
            rule.target = self.name(family, table, rule.target)
        if "log" not in rule.target_args:
            return [rule]
        prefix = rule.target_args.pop("log")
        if rule.target is None:
            rule.target, rule.target_args["--log-prefix"] = "LOG", prefix
            return [rule]
        log = ParsedRule(line, rule.text, "filter", chain, copy.copy(rule.match), "LOG")
        log.target_args["--log-prefix"] = prefix
        return [log, rule]

    def statement(
        self, rule: ParsedRule, stmt: dict, fam: int, table: str, families: set[int]
    ) -> None:
        (key, value), *_ = stmt.items()
        if key == "match":
            if rule.match.rate_limit is not None:
                raise Unsupported(LIMIT_BEFORE_MATCH)
            self.match(rule, value, fam, table, families)
        elif key in ("accept", "drop", "return"):
            rule.target = {"accept": "ACCEPT", "drop": "DROP", "return": "RETURN"}[key]
        elif key == "reject":
            rule.target = "REJECT"
            self.reject(rule, value or {}, fam)
        elif key in ("jump", "goto"):
            rule.target, rule.goto = value["target"], key == "goto"
        elif key == "counter":
            pass
        elif key == "log":
            rule.notes.append("log: imported as log: true on the rule (its prefix when given)")
            rule.target_args["log"] = (value or {}).get("prefix", "")
        elif key == "limit":
            self.limit(rule, value)
        elif key in ("dnat", "snat", "redirect", "masquerade"):
            self.nat(rule, key, value or {}, fam)
        elif key == "xt":
            raise Unsupported(
                f"xt {value.get('type')} {value.get('name')} (iptables-nft's translation of "
                "an iptables extension nft cannot say) has no equivalent: onboard iptables-save"
            )
        else:
            raise Unsupported(f"nft statement {key} has no equivalent")

    def match(self, rule: ParsedRule, m: dict, fam: int, table: str, families: set[int]) -> None:
        op, left, right = m["op"], m["left"], m["right"]
        negate = op == "!="
        if op not in ("==", "!=", "in"):
            raise Unsupported(f"operator {op} has no equivalent")
        if "payload" in left:
            self.payload(rule, left["payload"], right, negate, fam, table, families)
        elif "meta" in left:
            self.meta(rule, left["meta"]["key"], right, negate, fam, families)
        elif "ct" in left:
            self.ct(rule, left["ct"]["key"], right, negate)
        else:
            raise Unsupported(f"match on {_operand(left)} has no equivalent")

    def payload(
        self, rule, pl: dict, right, negate: bool, fam: int, table: str, families: set[int]
    ) -> None:
        proto, fieldname = pl.get("protocol"), pl.get("field")
        if proto in _ADDR_FAMILY:
            if _ADDR_FAMILY[proto] != fam:
                families.clear()
                return
            side = {"saddr": "sources", "daddr": "destinations"}.get(fieldname)
            if side is None:
                raise Unsupported(f"{proto} {fieldname} has no equivalent")
            if getattr(rule.match, side):
                raise Unsupported(f"matches the {side[:-1]} twice: the document ORs addresses")
            if isinstance(right, str) and right.startswith("@"):
                refs: tuple[str, ...] = (f"@set:{table}/{right[1:]}",)
            else:
                refs = tuple(_addresses(right, fam))
            if negate and len(refs) > 1:
                raise Unsupported("a negated address list has no equivalent")
            setattr(rule.match, side, refs)
            setattr(rule.match, f"{side}_negate", negate)
        elif proto in ("tcp", "udp", "th") and fieldname in ("dport", "sport"):
            if negate:
                raise Unsupported(f"negated {proto} {fieldname} has no equivalent")
            if proto != "th":
                self.set_protocol(rule, proto, fam, families)
            elif rule.match.protocol not in ("tcp", "udp"):
                raise Unsupported("th ports without protocol tcp or udp have no equivalent")
            setattr(rule.match, f"{fieldname}s", tuple(_ports(self.port_values(right, table))))
        elif proto in ("icmp", "icmpv6") and fieldname == "type":
            if negate or not isinstance(right, (str, int)):
                raise Unsupported(f"{proto} type {_operand(right)} has no equivalent (one type)")
            self.set_protocol(rule, "icmp" if proto == "icmp" else "ipv6-icmp", fam, families)
            rule.match.icmp_type = str(_ICMPV6_ND.get(str(right), right))
        else:
            raise Unsupported(f"{proto} {fieldname} has no equivalent")

    def port_values(self, right, table: str) -> list:
        if isinstance(right, str) and right.startswith("@"):
            for (_fam, t, name), body in self.named_sets.items():
                if t == table and name == right[1:] and body.get("type") == "inet_service":
                    return list(body.get("elem", []) or [])
            raise Unsupported(f"set {right} of ports not found")
        return _values(right)

    def set_protocol(self, rule: ParsedRule, given, fam: int, families: set[int]) -> None:
        names = _values(given)
        mine = [_L4.get(str(n)) for n in names]
        if None in mine:
            raise Unsupported(
                f"protocol {_operand(given)} has no equivalent (tcp, udp, icmp, icmpv6)"
            )
        fits = [p for p in mine if p not in ({"icmpv6"} if fam == 4 else {"icmp"})]
        if not fits:
            families.clear()
            return
        if len(set(fits)) > 1:
            raise Unsupported(
                f"several protocols ({_operand(given)}) in one rule have no equivalent"
            )
        if rule.match.protocol not in (None, fits[0]):
            families.clear()  # tcp and udp at once: no packet
            return
        rule.match.protocol = PROTOCOLS[fits[0] if fits[0] != "icmpv6" else "ipv6-icmp"]

    def meta(self, rule, key: str, right, negate: bool, fam: int, families: set[int]) -> None:
        if key == "nfproto":
            if {"ipv4": 4, "ipv6": 6}.get(str(right)) != fam:
                families.clear()
            return
        if key == "l4proto":
            if negate:
                raise Unsupported("a negated protocol has no equivalent")
            self.set_protocol(rule, right, fam, families)
            return
        if key in ("iifname", "oifname", "iif", "oif"):
            if negate or not isinstance(right, str):
                raise Unsupported(
                    f"{'negated ' if negate else ''}{key} {_operand(right)} has no equivalent"
                )
            name = right[:-1] + "+" if right.endswith("*") else right
            setattr(rule.match, "in_interface" if key.startswith("i") else "out_interface", name)
            return
        raise Unsupported(f"meta {key} has no equivalent")

    def ct(self, rule: ParsedRule, key: str, right, negate: bool) -> None:
        values = _values(right)
        if negate:
            raise Unsupported(f"negated ct {key} has no equivalent")
        if key == "state":
            states = {str(v).upper() for v in values}
            if states - STATES:
                raise Unsupported(
                    f"ct state {', '.join(sorted(states - STATES))} has no equivalent"
                )
            rule.match.states = frozenset(s.lower() for s in states)
        elif key == "status" and [str(v) for v in values] == ["dnat"]:
            rule.ct_dnat = "only"
        else:
            raise Unsupported(f"ct {key} {_operand(right)} has no equivalent")

    def reject(self, rule: ParsedRule, value: dict, fam: int) -> None:
        kind, expr = value.get("type"), value.get("expr")
        if kind == "tcp reset":
            rule.target_args["--reject-with"] = "tcp-reset"
        elif expr:
            spelled = _REJECT[fam].get(str(expr))
            if spelled is None:
                raise Unsupported(f"reject with {kind} {expr} has no equivalent")
            rule.target_args["--reject-with"] = spelled

    def limit(self, rule: ParsedRule, value: dict | str) -> None:
        if rule.match.rate_limit is not None:
            raise Unsupported("two limit statements in one rule have no equivalent")
        if isinstance(value, str):  # `limit name "x"`: a bucket every rule naming it shares
            raise Unsupported(
                f"limit name {json.dumps(value)} (a named limit object, one bucket for every "
                "rule that names it) has no equivalent"
            )
        if value.get("per") not in ("second", "minute", "hour", "day") or value.get("inv"):
            raise Unsupported(f"limit {json.dumps(value)} has no equivalent")
        if value.get("rate_unit", "packets") != "packets":
            raise Unsupported("a byte rate limit has no equivalent")
        rule.match.rate_limit = f"{value['rate']}/{value['per']}"
        if value.get("burst"):
            rule.match.burst = int(value["burst"])

    def nat(self, rule: ParsedRule, key: str, value: dict, fam: int) -> None:
        rule.target = key.upper()
        addr, port = value.get("addr"), value.get("port")
        if value.get("family") and {"ip": 4, "ip6": 6}.get(value["family"]) != fam:
            raise Unsupported(f"{key} for the other family")
        if key == "redirect":
            if port is not None:
                rule.target_args["--to-ports"] = _port_text(port)
            return
        if key == "masquerade":
            return
        if not isinstance(addr, str):
            raise Unsupported(f"{key} to {_operand(addr)} has no equivalent (one address)")
        host = f"[{addr}]" if ":" in addr and port is not None else addr
        to = host + (f":{_port_text(port)}" if port is not None else "")
        rule.target_args["--to-destination" if key == "dnat" else "--to-source"] = to


def _values(right) -> list:
    """The values a match compares with: an anonymous set, a list (`a,b` in the text
    form, a flag list in JSON) or one value."""
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    return list(right) if isinstance(right, list) else [right]


def _verdict_of(rule: ParsedRule, expr: list) -> None:
    """The target of a rule that could not be read, from its last statements."""
    for stmt in expr:
        if not isinstance(stmt, dict):
            continue
        for key, name in _STATEMENT_TARGETS.items():
            if key in stmt:
                rule.target = name
        for key in ("jump", "goto"):
            if key in stmt:
                rule.target = stmt[key].get("target")


_STATEMENT_TARGETS = {
    "accept": "ACCEPT",
    "drop": "DROP",
    "reject": "REJECT",
    "dnat": "DNAT",
    "snat": "SNAT",
    "masquerade": "MASQUERADE",
    "redirect": "REDIRECT",
}
# nft's names of the neighbour discovery types (the document knows them by number)
_ICMPV6_ND = {
    "nd-router-solicit": 133,
    "nd-router-advert": 134,
    "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136,
    "nd-redirect": 137,
}


def _port_text(port) -> str:
    if isinstance(port, dict) and "range" in port:
        return "-".join(str(p) for p in port["range"])
    return str(port)


def _ports(values: Iterable) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, dict) and "range" in v:
            lo, hi = v["range"]
            out.append(f"{lo}-{hi}")
        elif isinstance(v, int | str) and str(v).isdecimal():
            out.append(str(v))
        else:
            raise Unsupported(f"port {_operand(v)} has no equivalent (numbers only)")
    return out


def _addresses(value, fam: int) -> list[str]:
    """Literals, prefixes, ranges and anonymous sets of them, as document literals."""
    if isinstance(value, dict) and "set" in value:
        return [a for v in value["set"] for a in _addresses(v, fam)]
    if isinstance(value, dict) and "prefix" in value:
        text = f"{value['prefix']['addr']}/{value['prefix']['len']}"
    elif isinstance(value, dict) and "range" in value:
        first, last = value["range"]
        return [f"{first}-{last}"]
    elif isinstance(value, dict) and "elem" in value:
        return _addresses(value["elem"]["val"], fam)
    elif isinstance(value, str):
        text = value
    else:
        raise Unsupported(f"address {_operand(value)} has no equivalent")
    net = ipaddress.ip_network(text, strict=False)
    if net.version != fam:
        raise Unsupported(f"an IPv{net.version} address in an IPv{fam} match")
    return [str(net.network_address) if net.num_addresses == 1 else str(net)]


def parse_nft_json(text: str) -> NftRuleset:
    """The JSON of `nft -j list ruleset`; ValueError if it is not that."""
    data = json.loads(text)
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError('no "nftables" list: not the output of `nft -j list ruleset`')
    return _Reader(items).run()
