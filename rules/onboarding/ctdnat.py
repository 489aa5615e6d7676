"""`-m conntrack --ctstate DNAT` in the filter table → rules on the translated packets
(pure: no Django).

`--ctstate DNAT` matches a packet of a connection whose destination the nat table
rewrote (firewalld: `--ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT`, so forwarded ports are
let in). The document has no such state; what it can say is where those connections go:
for each `dnat`/`redirect` entry the rule set imported (the nat pass runs first), one
rule with the dump rule's verdict and matches on the translated destination (address,
protocol, port) and the entry's own source and interface — in the order of the entries,
right where the dump rule was. The states given with DNAT (RELATED,ESTABLISHED) stay
one rule of their own before them. That also matches connections made straight to the
translated address and port, without NAT: noted as *more permissive*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from compiler.document import parse_nat_target

from .document import Emitted
from .dumps import Match, ParsedRule
from .losses import PERMISSIVE
from .matches import combine
from .results import Skipped

_NAT_CHAINS = {"input": "prerouting", "forward": "prerouting", "output": "output"}


class CtDnatMixin:
    """Part of the translator (translate._Translator)."""

    family: int
    nat: list[dict]
    notes: dict[tuple[int, str], Skipped]

    # the translator's own (declared for the type checker)
    skip: Callable[[ParsedRule, str], None]
    mark: Callable[[ParsedRule, list[int]], None]
    emit: Callable[..., int]
    verdict: Callable[..., bool | None]
    reject_with: Callable[..., str | None]

    def ct_dnat_rules(self, frame, rule: ParsedRule, merged: Match, log, rest) -> bool | None:
        """A verdict rule with `--ctstate …DNAT` (see the module docstring)."""
        actions = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject"}
        if rule.target not in actions:
            self.skip(rule, f"--ctstate DNAT with target {rule.target} has no equivalent")
            return None
        if rule.ct_dnat == "also":  # the other states: the rule as it reads without DNAT
            self.verdict(frame, replace(rule, ct_dnat=None), merged, log, rest)
        chain = frame.builtin.lower()
        base = replace(merged, states=frame.ctx.states)  # DNAT, not the other states
        indexes = []
        for entry in self.nat:
            wanted = translated_match(entry, self.family, _NAT_CHAINS.get(chain, ""))
            both = combine(base, wanted) if wanted is not None else None
            if not isinstance(both, Match):
                continue
            e = Emitted(chain, both, actions[rule.target], rule.line, rule.comment)
            if rule.target == "REJECT":
                e.reject_with = self.reject_with(rule, both)
            indexes.append(self.emit(e))
        self.mark(rule, indexes)
        if not indexes:
            text = (
                f"--ctstate DNAT: no dnat/redirect entry of the rule set (IPv{self.family}) "
                "translates a connection, so no packet matches it"
            )
            self.notes.setdefault((rule.line, text), Skipped(rule.line, rule.text, text))
            return None
        text = (
            "--ctstate DNAT (a connection the nat table translated) imported as "
            f"{len(indexes)} rule(s) on the translated destinations of the rule set's dnat/"
            "redirect entries: they also match connections made straight to those "
            "addresses and ports"
        )
        self.notes.setdefault(
            (rule.line, text), Skipped(rule.line, rule.text, text, impact=PERMISSIVE)
        )
        return None

    def ct_orig_rule(self, frame, rule: ParsedRule, merged: Match, log, rest) -> bool | None:
        """`--ctorigdstport P`/`--ctorigdst A` (shorewall: accept the translated port of a
        DNAT): the rule without them when an imported dnat/redirect entry translates
        from there to what the rule matches (also matching straight connections: noted),
        else no packet can match it."""
        if rule.target not in ("ACCEPT", "DROP", "REJECT") or rule.ct_dnat is not None:
            self.skip(rule, "--ctorigdst/--ctorigdstport here has no equivalent")
            return None
        chain = _NAT_CHAINS.get(frame.builtin.lower(), "")
        feeding = [
            e
            for e in self.nat
            if (m := translated_match(e, self.family, chain)) is not None
            and isinstance(combine(merged, m), Match)
            and ("dport" not in rule.ct_orig or _has_port(e, rule.ct_orig["dport"]))
            and (
                "dst" not in rule.ct_orig
                or _orig_dst(rule.ct_orig["dst"])
                in e.get("destinations", [_orig_dst(rule.ct_orig["dst"])])
            )
        ]
        if not feeding:
            self.mark(rule, [])
            self.notes.setdefault(
                (rule.line, "ctorig"),
                Skipped(
                    rule.line,
                    rule.text,
                    "no dnat/redirect entry of the rule set translates to it from its "
                    "original destination: no packet matches it",
                ),
            )
            return None
        plain = replace(rule, ct_orig={})
        decided = self.verdict(frame, plain, merged, log, rest)
        text = (
            "--ctorigdst/--ctorigdstport (the connection's destination before a DNAT) left "
            "out: the rule also matches connections made straight to "
            "that address and port"
        )
        self.notes.setdefault(
            (rule.line, text), Skipped(rule.line, rule.text, text, impact=PERMISSIVE)
        )
        return decided


def _has_port(entry: dict, port: str) -> bool:
    ports = entry.get("dports") or []
    if not ports:
        return True
    for p in ports:
        lo, _, hi = p.partition("-")
        if int(lo) <= int(port) <= int(hi or lo):
            return True
    return False


def _orig_dst(text: str) -> str:
    return text.split("/")[0] if text.endswith(("/32", "/128")) else text


def translated_match(entry: dict, family: int, nat_chain: str) -> Match | None:
    """What a packet looks like after the NAT entry translated it (None: not one of this
    family's, this chain's, or not a destination translation)."""
    if entry["type"] not in ("dnat", "redirect") or entry.get("chain") != nat_chain:
        return None
    dports = tuple(entry.get("dports", ()))
    destinations: tuple[str, ...] = ()
    to = entry.get("to")
    if entry["type"] == "dnat":
        address, ports = parse_nat_target(to)
        if address.version != family:
            return None
        destinations = (str(address),)
    else:
        ports = None
        if to:
            lo, _, hi = str(to).partition("-")
            ports = (int(lo), int(hi or lo))
    if ports is not None:
        dports = (str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}",)
    sources = tuple(s for s in entry.get("sources", ()) if s not in ("0.0.0.0/0", "::/0"))
    return Match(
        sources=sources,
        destinations=destinations,
        protocol=entry.get("protocol"),
        dports=dports,
        in_interface=entry.get("in_interface"),
    )
