"""The translator's second half: the rules it emitted → a policy document (pure: no Django).

Sets become address groups named `<rule set>.<set>`; a rule the document cannot hold is
reported in `skipped` with its reason instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from compiler import values as V

from .dumps import BUILTIN, Dump, IpSet, Match
from .results import Skipped

ANY = {4: "0.0.0.0/0", 6: "::/0"}
IPV6_KEPT = (
    "the dump has no IPv6 rules (no ip6tables-save given): the host accepted all IPv6, so "
    "the rule set accepts IPv6 in {chains} (kept as it was); onboard ip6tables-save into "
    "its own rule set to import IPv6 rules instead"
)
COMMENT_MAX = 200


@dataclass
class Emitted:
    chain: str
    match: Match
    action: str
    line: int
    comment: str
    log_prefix: str | None = None
    log: bool = False
    reject_with: str | None = None


def set_group_name(ruleset: str, name: str) -> str:
    """An ipset as an address group name: `<rule set>.<set>`, so importing an onboarded
    host never overwrites another host's (or the console's own) group of the same name."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
    return f"{ruleset}.{clean}"[:63]


class DocumentBuilder:
    """Builds the document from `emitted`; the translator (a subclass) walks the chains
    and fills `emitted`, `translated`, `skipped` and `notes`."""

    dump: Dump
    sets: dict[str, IpSet]
    ruleset: str
    family: int
    emitted: list[Emitted]
    translated: dict[int, list[int]]
    skipped: dict[tuple[int, str], Skipped]
    notes: dict[tuple[int, str], Skipped]
    left_to_others: set[str]  # built-in chains whose policy stays the kernel's

    def note(self, line: int, text: str, reason: str, source: str = "iptables-save") -> None:
        """Report a translation that is close but not exact (once per line and reason)."""
        self.notes.setdefault((line, reason), Skipped(line, text, reason, source))

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
        if not kind.isdecimal():
            return kind
        return {v: k for k, v in table.items()}.get(int(kind), int(kind))

    def rule_dict(self, e: Emitted) -> dict | str:
        """The document rule, or a reason it cannot be one."""
        m = e.match
        rule: dict = {"chain": e.chain, "action": e.action}
        if e.reject_with is not None:
            rule["reject_with"] = e.reject_with
        problem = self.add_addresses(rule, m) or self.add_protocol(rule, m)
        if problem:
            return problem
        if m.in_interface:
            rule["in_interface"] = m.in_interface
        if m.out_interface:
            rule["out_interface"] = m.out_interface
        if m.states:
            rule["states"] = sorted(
                m.states,
                key=["new", "established", "related", "invalid", "untracked", "dnat"].index,
            )
        if e.log:
            self.add_log(rule, e)
        if m.rate_limit:
            rule["rate_limit"] = m.rate_limit
            if m.burst is not None:
                rule["burst"] = m.burst
        if m.per_source is not None:
            rule["rate_limit_per_source"] = m.per_source.to_dict()
        where = f"iptables-save line {e.line}"
        text = f"{e.comment} ({where})" if e.comment else where
        rule["comment"] = text[:COMMENT_MAX]
        return rule

    def add_addresses(self, rule: dict, m: Match) -> str | None:
        """Sources and destinations (sets as their groups; none at all: the dump's family)."""
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
        return None

    def add_protocol(self, rule: dict, m: Match) -> str | None:
        """Protocol with its ICMP type or ports; ports need a protocol."""
        if m.icmp_type is not None:
            proto = m.protocol or ("icmpv6" if self.family == 6 else "icmp")
            if proto not in ("icmp", "icmpv6"):
                return f"an ICMP type with protocol {proto}"
            try:
                V.parse_icmp_type(
                    proto, int(m.icmp_type) if m.icmp_type.isdecimal() else m.icmp_type
                )
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
        return None

    def add_log(self, rule: dict, e: Emitted) -> None:
        """log: true, with the LOG rule's prefix when the document can hold it, exactly as
        the host has it: a trailing space is part of its log lines (`telnet: IN=...`, ufw's
        `[UFW BLOCK] `), which log parsers match."""
        rule["log"] = True
        prefix = e.log_prefix or ""
        if prefix:
            try:
                rule["log_prefix"] = V.parse_log_prefix(prefix)
            except ValueError as exc:
                self.note(e.line, "", f"log prefix {prefix!r} left out: {exc}")

    def keep_ipv6(self, doc: dict) -> str:
        """IPv4 dumps: accept IPv6 as a host without ip6tables rules does (else the device's
        default policy would shut IPv6 off), except in chains other software decides in.
        Says what it did."""
        chains = [b.lower() for b in BUILTIN if b not in self.left_to_others]
        for chain in chains:
            doc["rulesets"][0]["rules"].append(
                {
                    "chain": chain,
                    "action": "accept",
                    "sources": [ANY[6]],
                    "comment": "IPv6 as the host had it: no ip6tables rules in the dump",
                }
            )
        return IPV6_KEPT.format(chains=", ".join(chains)) if chains else ""

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
