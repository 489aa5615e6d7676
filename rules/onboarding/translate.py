"""iptables-save (+ ipset save) → a policy document with one rule set (pure: no Django).

The filter table is walked from INPUT, FORWARD and OUTPUT as netfilter walks it; user chains
are inlined at their jumps (the jump's matches combined with each inlined rule's), so the
rule set decides every packet as the dump does. Each built-in chain ends with a catch-all
rule carrying its policy, so the rule set does not depend on the device's default policy.
Every rule is scoped to the dump's family (IPv4 dumps → IPv4 only): a rule without
addresses would otherwise apply to IPv6 too.

Nothing is dropped silently: every line is either translated (`translated`: line → rule
indexes) or reported in `skipped` with its reason; chains of other software (Docker,
kube-proxy) are listed in `foreign_chains`; translations that are close but not exact are
listed in `notes`.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import asdict, dataclass, field

from compiler import values as V

from .dumps import BUILTIN, Dump, IpSet, Match, ParsedRule, parse_ipset_save, parse_iptables_save
from .foreign import chain_owner, rule_interface_owner

VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject"}
ANY = {4: "0.0.0.0/0", 6: "::/0"}
COMMENT_MAX = 200


@dataclass
class Skipped:
    line: int
    text: str
    reason: str
    source: str = "iptables-save"


@dataclass
class ForeignChain:
    name: str
    owner: str
    lines: list[int] = field(default_factory=list)


@dataclass
class OnboardingResult:
    document: dict
    skipped: list[Skipped]
    foreign_chains: list[ForeignChain]
    notes: list[Skipped]
    translated: dict[int, list[int]]
    default_policy: dict[str, str]
    family: int

    def to_dict(self) -> dict:
        return {
            "document": self.document,
            "family": self.family,
            "default_policy": self.default_policy,
            "skipped": [asdict(s) for s in self.skipped],
            "foreign_chains": [asdict(c) for c in self.foreign_chains],
            "notes": [asdict(n) for n in self.notes],
            "translated": {str(k): v for k, v in sorted(self.translated.items())},
        }


class Unflattenable(Exception):
    """A user chain whose rules cannot be inlined (e.g. a conditional RETURN)."""


@dataclass
class Emitted:
    chain: str
    match: Match
    action: str
    line: int
    comment: str
    log_prefix: str | None = None
    log: bool = False


NEVER = "never"


def _ranges(ports: tuple[str, ...]) -> list[tuple[int, int]]:
    return [V.parse_port(p) for p in ports]


def _combine_ports(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    both = [
        (max(x[0], y[0]), min(x[1], y[1]))
        for x in _ranges(a)
        for y in _ranges(b)
        if max(x[0], y[0]) <= min(x[1], y[1])
    ]
    return tuple(V.format_port(r) for r in sorted(set(both)))


def _combine_address(a: str, b: str) -> str | None:
    """The intersection of two literals when it is one of them; NEVER if disjoint."""
    if a.startswith("@set:") or b.startswith("@set:") or "-" in a or "-" in b:
        return None
    na, nb = ipaddress.ip_network(a), ipaddress.ip_network(b)
    if na.version != nb.version or not na.overlaps(nb):
        return NEVER
    return a if na.subnet_of(nb) else b


def combine(outer: Match, inner: Match) -> Match | str | None:
    """Both matches at once: a Match, NEVER (no packet matches both), or None when the
    document cannot say it (e.g. two different rate limits)."""
    out = copy.copy(outer)
    for name in ("protocol", "icmp_type", "in_interface", "out_interface"):
        a, b = getattr(outer, name), getattr(inner, name)
        if a and b and a != b:
            if name.endswith("interface") and (a.endswith("+") or b.endswith("+")):
                return None
            return NEVER
        setattr(out, name, a or b)
    for name in ("sources", "destinations"):
        a, b = getattr(outer, name), getattr(inner, name)
        a_neg, b_neg = getattr(outer, f"{name}_negate"), getattr(inner, f"{name}_negate")
        if not (a and b):
            setattr(out, name, a or b)
            setattr(out, f"{name}_negate", a_neg if a else b_neg)
        elif (a, a_neg) == (b, b_neg):
            continue
        elif a_neg or b_neg or len(a) != 1 or len(b) != 1:
            return None
        else:
            both = _combine_address(a[0], b[0])
            if both is None or both == NEVER:
                return both
            setattr(out, name, (both,))
    for name in ("dports", "sports"):
        a, b = getattr(outer, name), getattr(inner, name)
        if a and b:
            both = _combine_ports(a, b)
            if not both:
                return NEVER
            setattr(out, name, both)
        else:
            setattr(out, name, a or b)
    if outer.rate_limit and inner.rate_limit:
        return None
    if inner.rate_limit:
        out.rate_limit, out.burst = inner.rate_limit, inner.burst
    if inner.states is not None:
        out.states = inner.states if outer.states is None else outer.states & inner.states
    if out.states is not None and not out.states:
        return NEVER
    return out


def set_group_name(ruleset: str, name: str) -> str:
    """An ipset as an address group name: `<rule set>.<set>`, so importing an onboarded
    host never overwrites another host's (or the console's own) group of the same name."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
    return f"{ruleset}.{clean}"[:63]


class _Translator:
    def __init__(self, dump: Dump, sets: dict[str, IpSet], ruleset: str):
        self.dump = dump
        self.sets = sets
        self.ruleset = ruleset
        self.family = dump.family
        self.emitted: list[Emitted] = []
        self.translated: dict[int, list[int]] = {}
        self.skipped: dict[tuple[int, str], Skipped] = {}
        self.notes: dict[tuple[int, str], Skipped] = {}
        self.foreign: dict[str, ForeignChain] = {}
        self.unflattenable: dict[str, str] = {}

    # ---- bookkeeping
    def skip(self, rule: ParsedRule, reason: str) -> None:
        self.skipped.setdefault((rule.line, reason), Skipped(rule.line, rule.text, reason))

    def note(self, line: int, text: str, reason: str, source: str = "iptables-save") -> None:
        self.notes.setdefault((line, reason), Skipped(line, text, reason, source))

    def mark(self, rule: ParsedRule, indexes: list[int]) -> None:
        self.translated.setdefault(rule.line, [])
        self.translated[rule.line] += [i for i in indexes if i not in self.translated[rule.line]]

    def foreign_rule(self, rule: ParsedRule, chain: str, owner: str, reason: str) -> None:
        fc = self.foreign.setdefault(chain, ForeignChain(chain, owner))
        if rule.line not in fc.lines:
            fc.lines.append(rule.line)
        self.skip(rule, reason)

    def snapshot(self):
        return (
            len(self.emitted),
            copy.deepcopy(self.translated),
            dict(self.skipped),
            dict(self.notes),
            copy.deepcopy(self.foreign),
        )

    def restore(self, snap) -> None:
        n, self.translated, self.skipped, self.notes, self.foreign = snap
        del self.emitted[n:]

    # ---- walking
    def run(self) -> None:
        for builtin in BUILTIN:
            if builtin not in self.dump.chains and builtin not in self.dump.policies:
                continue
            decides = self.walk(builtin, builtin, Match(), (), None)
            policy, line = self.dump.policies.get(builtin, ("ACCEPT", 0))
            if not decides:
                index = self.emit(
                    Emitted(
                        builtin.lower(),
                        Match(),
                        VERDICTS.get(policy, "accept"),
                        line,
                        f"policy of {builtin}",
                    )
                )
                self.translated.setdefault(line, []).append(index)
        for chain, rules in self.dump.chains.items():
            owner = chain_owner(chain)
            for rule in rules:
                if rule.line in self.translated or any(k[0] == rule.line for k in self.skipped):
                    continue
                if owner:
                    self.foreign_rule(
                        rule, chain, owner, f"chain {chain} belongs to {owner}: not imported"
                    )
                elif chain in self.unflattenable:
                    self.skip(
                        rule,
                        f"in chain {chain}, which cannot be inlined: {self.unflattenable[chain]}",
                    )
                else:
                    self.skip(rule, f"chain {chain} is never reached from INPUT, FORWARD or OUTPUT")
        for rule in self.dump.other_tables:
            owner = chain_owner(rule.chain)
            if owner:
                self.foreign_rule(
                    rule,
                    rule.chain,
                    owner,
                    f"chain {rule.chain} ({rule.table} table) belongs to {owner}: not imported",
                )
            else:
                self.skip(rule, f"table {rule.table}: only the filter table is imported")
        for line, text, reason in self.dump.bad_lines:
            self.skipped.setdefault((line, reason), Skipped(line, text, reason))

    def emit(self, e: Emitted) -> int:
        self.emitted.append(e)
        return len(self.emitted) - 1

    def walk(
        self, chain: str, builtin: str, ctx: Match, stack: tuple[str, ...], via: int | None
    ) -> bool:
        """Emit the rules of `chain` for packets that got here matching `ctx`.

        Returns True when every such packet is decided here (nothing falls through).
        """
        rules = self.dump.chains.get(chain, [])
        pending_log: ParsedRule | None = None
        for i, rule in enumerate(rules):
            log, pending_log = pending_log, None
            if log is not None and not (rule.target in VERDICTS and not rule.error):
                self.skip(log, "LOG without a verdict of its own")
                log = None
            owner = rule_interface_owner(rule.text)
            if owner:
                self.foreign_rule(
                    rule,
                    f"{chain} (rules naming {owner} interfaces)",
                    owner,
                    f"names a {owner} interface: {owner}'s rule, not imported",
                )
                continue
            if rule.error:
                if rule.target == "RETURN" and chain != builtin:
                    raise Unflattenable(f"line {rule.line}: a RETURN whose match {rule.error}")
                self.skip(rule, rule.error)
                continue
            merged = combine(ctx, rule.match)
            if merged is None:
                self.skip(rule, f"cannot be combined with the matches of the jump at line {via}")
                continue
            if merged == NEVER:
                self.mark(rule, [])  # contradicts the jump's matches: no packet gets here
                continue
            assert isinstance(merged, Match)
            for note in rule.notes:
                self.note(rule.line, rule.text, note)
            unconditional = rule.match.is_empty()
            target = rule.target
            rest = rules[i + 1 :]
            if target in VERDICTS or (target == "RETURN" and chain == builtin):
                action = VERDICTS.get(target) or VERDICTS.get(
                    self.dump.policies.get(builtin, ("ACCEPT", 0))[0], "accept"
                )
                emitted = Emitted(builtin.lower(), merged, action, rule.line, rule.comment)
                if log is not None:
                    emitted.log, emitted.log_prefix = True, log.target_args.get("--log-prefix")
                    self.mark(log, [len(self.emitted)])
                if target == "REJECT" and rule.target_args.get("--reject-with", "") not in (
                    "",
                    "icmp-port-unreachable",
                    "icmp6-port-unreachable",
                    "tcp-reset",
                ):
                    self.note(
                        rule.line,
                        rule.text,
                        f"rejected with {rule.target_args['--reject-with']} "
                        "in the dump; Rampart's reject answers in its own way",
                    )
                self.mark(rule, [self.emit(emitted)])
                if unconditional:
                    self.unreachable(rest, rule.line)
                    return True
            elif target == "LOG":
                nxt = rest[0] if rest else None
                if (
                    nxt is not None
                    and not nxt.error
                    and nxt.target in VERDICTS
                    and nxt.match == rule.match
                ):
                    pending_log = rule
                else:
                    self.skip(
                        rule,
                        "LOG without a verdict of its own: Rampart logs the rules that decide "
                        "(log: true on an accept/drop/reject rule)",
                    )
            elif target == "RETURN":
                if unconditional:
                    self.mark(rule, [])
                    self.unreachable(rest, rule.line)
                    return False
                snap = self.snapshot()
                decides_after = self.walk_rest(chain, builtin, ctx, stack, via, rest)
                if len(self.emitted) > snap[0] or decides_after:
                    self.restore(snap)
                    raise Unflattenable(
                        f"line {rule.line}: a conditional RETURN before rules that decide"
                    )
                self.mark(rule, [])
                self.note(
                    rule.line,
                    rule.text,
                    "conditional RETURN with nothing deciding after it: no effect",
                )
                return False
            elif target in self.dump.chains:
                owner = chain_owner(target)
                if owner:
                    self.foreign_rule(
                        rule, target, owner, f"jumps to {target}, a chain of {owner}: not imported"
                    )
                    continue
                if target in stack or target == chain:
                    self.skip(rule, f"jump to {target} makes a loop")
                    continue
                snap = self.snapshot()
                start = len(self.emitted)
                try:
                    decides = self.walk(target, builtin, merged, (*stack, chain), rule.line)
                except Unflattenable as exc:
                    self.restore(snap)
                    self.unflattenable[target] = str(exc)
                    self.skip(rule, f"jump to {target} cannot be inlined: {exc}")
                    continue
                if rule.goto and not decides and chain == builtin:
                    # falling off a chain reached by goto from a built-in chain ends that
                    # built-in chain: its policy decides
                    policy = self.dump.policies.get(builtin, ("ACCEPT", 0))[0]
                    self.emit(
                        Emitted(
                            builtin.lower(),
                            merged,
                            VERDICTS.get(policy, "accept"),
                            rule.line,
                            f"policy of {builtin} after goto {target}",
                        )
                    )
                    decides = True
                elif rule.goto and not unconditional and not decides:
                    self.restore(snap)
                    self.skip(
                        rule, f"conditional goto to {target}, which can fall through: no equivalent"
                    )
                    continue
                self.mark(rule, list(range(start, len(self.emitted))))
                if unconditional and (decides or rule.goto):
                    self.unreachable(rest, rule.line)
                    return decides
            elif target is None:
                self.skip(rule, "no target: the rule only counts packets (or feeds a match module)")
            else:
                self.skip(rule, f"target {target} has no equivalent in the policy document")
        return False

    def walk_rest(
        self,
        chain: str,
        builtin: str,
        ctx: Match,
        stack: tuple[str, ...],
        via: int | None,
        rest: list[ParsedRule],
    ) -> bool:
        saved = self.dump.chains.get(chain, [])
        self.dump.chains[chain] = rest
        try:
            return self.walk(chain, builtin, ctx, stack, via)
        finally:
            self.dump.chains[chain] = saved

    def unreachable(self, rules: list[ParsedRule], line: int) -> None:
        for rule in rules:
            if rule.line not in self.translated:
                self.skip(
                    rule, f"unreachable: line {line} above decides (or returns) every packet first"
                )

    # ---- the document
    def address_refs(self, refs: tuple[str, ...]) -> list[str] | None:
        out = []
        for ref in refs:
            if ref.startswith("@set:"):
                name = ref[5:]
                problem = self.set_problem(name, ())
                if problem:
                    return None
                out.append(set_group_name(self.ruleset, name))
            else:
                out.append(ref)
        return out

    def set_problem(self, name: str, stack: tuple[str, ...]) -> str | None:
        ipset = self.sets.get(name)
        if ipset is None:
            return f"set {name} is not in the ipset dump"
        if ipset.error:
            return f"set {name}: {ipset.error}"
        if name in stack:
            return f"set {name} contains itself"
        for member in ipset.members:
            if member.startswith("@set:"):
                problem = self.set_problem(member[5:], (*stack, name))
                if problem:
                    return problem
        return None

    @staticmethod
    def icmp_type(protocol: str, kind: str) -> str | int:
        """The type by its document name where it has one (echo-request), else its number."""
        table = V.ICMPV6_TYPES if protocol == "icmpv6" else V.ICMP_TYPES
        if not kind.isdigit():
            return kind
        return {v: k for k, v in table.items()}.get(int(kind), int(kind))

    def rule_dict(self, e: Emitted) -> dict | str:
        """The document rule, or a reason it cannot be one."""
        m = e.match
        rule: dict = {"chain": e.chain, "action": e.action}
        for side in ("sources", "destinations"):
            refs = getattr(m, side)
            if refs:
                names = self.address_refs(refs)
                if names is None:
                    return self.set_problem(refs[0][5:], ()) or "unusable set"
                rule[side] = names
                if getattr(m, f"{side}_negate"):
                    rule[f"{side}_negate"] = True
        if not m.sources and not m.destinations:
            rule["sources"] = [ANY[self.family]]
        if m.icmp_type is not None:
            proto = m.protocol or ("icmpv6" if self.family == 6 else "icmp")
            if proto not in ("icmp", "icmpv6"):
                return f"an ICMP type with protocol {proto}"
            try:
                V.parse_icmp_type(proto, int(m.icmp_type) if m.icmp_type.isdigit() else m.icmp_type)
            except ValueError as exc:
                return str(exc)
            rule["protocol"] = proto
            rule["icmp_type"] = self.icmp_type(proto, m.icmp_type)
        elif m.protocol:
            rule["protocol"] = m.protocol
            if m.dports:
                rule["dports"] = list(m.dports)
            if m.sports:
                rule["sports"] = list(m.sports)
        elif m.dports or m.sports:
            return "ports without a protocol"
        if m.in_interface:
            rule["in_interface"] = m.in_interface
        if m.out_interface:
            rule["out_interface"] = m.out_interface
        if m.states:
            rule["states"] = sorted(
                m.states, key=["new", "established", "related", "invalid", "untracked"].index
            )
        if e.log:
            rule["log"] = True
            prefix = (e.log_prefix or "").strip()
            if prefix:
                try:
                    rule["log_prefix"] = V.parse_log_prefix(prefix)
                except ValueError:
                    self.note(
                        e.line,
                        "",
                        f"log prefix {prefix!r} left out: {V.LOG_PREFIX_MAX} characters at most",
                    )
        if m.rate_limit:
            rule["rate_limit"] = m.rate_limit
            if m.burst is not None:
                rule["burst"] = m.burst
        where = f"iptables-save line {e.line}"
        text = f"{e.comment} ({where})" if e.comment else where
        rule["comment"] = text[:COMMENT_MAX]
        return rule

    def document(self) -> dict:
        rules: list[dict] = []
        index_map: dict[int, int] = {}
        by_line = {r.line: r for rules_ in self.dump.chains.values() for r in rules_}
        for i, e in enumerate(self.emitted):
            built = self.rule_dict(e)
            if isinstance(built, str):
                rule = by_line.get(e.line)
                self.skipped.setdefault(
                    (e.line, built), Skipped(e.line, rule.text if rule else "", built)
                )
                continue
            index_map[i] = len(rules)
            rules.append(built)
        self.translated = {
            line: [index_map[i] for i in idx if i in index_map]
            for line, idx in self.translated.items()
        }
        for line in [
            ln
            for ln, idx in self.translated.items()
            if not idx and any(k[0] == ln for k in self.skipped)
        ]:
            del self.translated[line]
        groups = []
        for name in sorted(self.sets):  # every usable set, used by a rule or not
            ipset = self.sets[name]
            reason = self.set_problem(name, ())
            if reason:
                for line, text in [(ipset.line, ipset.text), *ipset.add_lines]:
                    self.skipped.setdefault(
                        (line, reason), Skipped(line, text, reason, "ipset save")
                    )
                continue
            for note in ipset.notes:
                self.note(ipset.line, ipset.text, note, "ipset save")
            groups.append(
                {
                    "name": set_group_name(self.ruleset, name),
                    "members": [
                        set_group_name(self.ruleset, m[5:]) if m.startswith("@set:") else m
                        for m in ipset.members
                    ],
                    "description": f"from ipset {name} ({ipset.type})",
                }
            )
        doc: dict = {"version": 1}
        if groups:
            doc["address_groups"] = groups
        doc["rulesets"] = [
            {
                "name": self.ruleset,
                "description": f"imported from iptables-save (IPv{self.family})",
                "rules": rules,
            }
        ]
        return doc


def translate_iptables_save(
    text: str, ipset_text: str = "", *, ruleset: str = "onboarded", family: int | None = None
) -> OnboardingResult:
    """Translate a dump into a document with one rule set; see the module docstring."""
    V.validate_name(ruleset)
    dump = parse_iptables_save(text, family)
    sets, set_skips = parse_ipset_save(ipset_text) if ipset_text else ({}, [])
    t = _Translator(dump, sets, ruleset)
    t.run()
    doc = t.document()
    skipped = sorted(t.skipped.values(), key=lambda s: (s.source, s.line, s.reason))
    skipped += [Skipped(line, raw, reason, "ipset save") for line, raw, reason in set_skips]
    policies = {c.lower(): VERDICTS.get(p, "accept") for c, (p, _) in dump.policies.items()}
    return OnboardingResult(
        doc,
        skipped,
        sorted(t.foreign.values(), key=lambda c: c.name),
        sorted(t.notes.values(), key=lambda s: (s.source, s.line)),
        t.translated,
        policies,
        dump.family,
    )
