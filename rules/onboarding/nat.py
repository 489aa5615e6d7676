"""The administrator's nat table → the rule set's `nat` entries (pure: no Django).

DNAT, SNAT, MASQUERADE and REDIRECT rules reached from PREROUTING, OUTPUT or POSTROUTING
(translate._NatTranslator walks the nat table as the filter table is walked: user chains
inlined at their jumps, conditional RETURNs negated) become `dnat`, `snat`, `masquerade`
and `redirect` entries of that built-in chain with the same matches; the document's NAT
rules hold interfaces, protocol, one source, one destination and destination ports, so a
rule needing more (a negation, source ports, a state, another module) is reported with
its reason instead. Other software's nat rules (Docker's) are left to their owner.
"""

from __future__ import annotations

from compiler.validate import nat_errors

from .dumps import Match, ParsedRule

NAT_BUILTIN = {"PREROUTING": "prerouting", "OUTPUT": "output", "POSTROUTING": "postrouting"}
NAT_TARGETS = {"DNAT": "dnat", "SNAT": "snat", "MASQUERADE": "masquerade", "REDIRECT": "redirect"}
_TO = {"DNAT": "--to-destination", "SNAT": "--to-source", "REDIRECT": "--to-ports"}
# what a document NAT rule can hold besides interfaces, protocol, addresses and dports
_EMPTY_REST = Match()


def _unexpressible(m: Match) -> str | None:
    """Why the match cannot be a document NAT rule, or None."""
    if m.sources_negate or m.destinations_negate:
        return "a negated address has no equivalent in a NAT rule"
    if any(ref.startswith("@set:") or "-" in ref for ref in (*m.sources, *m.destinations)):
        return "a set or range in a NAT rule has no equivalent (literal addresses only)"
    rest = Match(
        sports=m.sports,
        icmp_type=m.icmp_type,
        states=m.states,
        rate_limit=m.rate_limit,
        burst=m.burst,
        per_source=m.per_source,
    )
    if rest != _EMPTY_REST:
        return "source ports, ICMP types, states and rate limits have no equivalent in NAT rules"
    return None


def nat_entry(rule: ParsedRule, family: int) -> dict | str:
    """The document NAT entry of one nat-table rule, or why there is none. Scoped to the
    dump's family like the filter rules (a NAT rule without addresses applies to both)."""
    if rule.chain not in NAT_BUILTIN:
        return (
            f"chain {rule.chain} of the nat table: only rules in PREROUTING, OUTPUT and "
            "POSTROUTING are imported"
        )
    if rule.target not in NAT_TARGETS:
        return (
            f"target {rule.target} in the nat table has no equivalent "
            "(DNAT, SNAT, MASQUERADE, REDIRECT)"
        )
    if rule.error:
        return rule.error
    if rule.recent is not None or rule.above is not None:
        return "-m recent and --hashlimit-above have no equivalent in a NAT rule"
    m = rule.match
    problem = _unexpressible(m)
    if problem:
        return problem
    entry: dict = {"type": NAT_TARGETS[rule.target], "chain": NAT_BUILTIN[rule.chain]}
    for key, value in (
        ("in_interface", m.in_interface),
        ("out_interface", m.out_interface),
        ("protocol", m.protocol),
        ("sources", list(m.sources)),
        ("destinations", list(m.destinations)),
        ("dports", list(m.dports)),
    ):
        if value:
            entry[key] = value
    if not m.sources and not m.destinations:
        entry["sources"] = ["0.0.0.0/0" if family == 4 else "::/0"]
    if rule.target in _TO and (rule.target != "REDIRECT" or _TO["REDIRECT"] in rule.target_args):
        entry["to"] = rule.target_args.get(_TO[rule.target], "")
    entry["comment"] = f"iptables-save line {rule.line}"
    errors = nat_errors(entry)
    if errors:
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(errors.items()))
    return entry
