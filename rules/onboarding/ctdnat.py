"""`-m conntrack --ctstate DNAT` and `--ctorigdstport` in the filter table → rules with
`states: [dnat]` (pure: no Django).

`--ctstate DNAT` matches a packet of a connection whose destination the nat table
rewrote (firewalld: `--ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT`, so forwarded ports are
let in): the document's `dnat` state, which stands alone, so the states given with DNAT
(RELATED,ESTABLISHED) stay one rule of their own just before it (the kernel ORs them:
the same verdicts). shorewall's `--ctorigdstport P` (accept the translated port of a
DNAT from P) becomes `states: [dnat]` on the rule's translated destination: wider when
another DNAT translates to the same place from elsewhere — then a verdict-changing loss.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from compiler.document import parse_nat_target

from .document import Emitted
from .dumps import Match, ParsedRule
from .losses import WIDER
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
        # the states DNAT must hold with ("DNAT and NEW": nft's `ct state new ct status dnat`
        # or a jump under a state match) cannot be said: states [dnat] alone is wider
        if frame.ctx.states if rule.ct_dnat == "also" else merged.states:
            self.skip(
                rule,
                WIDER + "--ctstate DNAT reached under a conntrack state match imported as "
                "states: [dnat] alone (also the other states of translated connections)",
            )
        self.dnat_rule(frame, rule, merged, actions[rule.target])
        return None

    def dnat_rule(self, frame, rule: ParsedRule, merged: Match, action: str) -> None:
        """The rule with `states: [dnat]` where it stands (its log line is not repeated:
        the other states' rule, or the plain one, logs)."""
        chain = frame.builtin.lower()
        m = replace(merged, states=frozenset({"dnat"}))
        e = Emitted(chain, m, action, rule.line, rule.comment)
        if action == "reject":
            e.reject_with = self.reject_with(rule, m)
        self.mark(rule, [self.emit(e)])

    def ct_orig_rule(self, frame, rule: ParsedRule, merged: Match, log, rest) -> bool | None:
        """`--ctorigdstport P`/`--ctorigdst A` (shorewall: accept the translated port of a
        DNAT): the rule without them when an imported dnat/redirect entry translates
        from there to what the rule matches (also matching straight connections: noted),
        else no packet can match it."""
        if rule.target not in ("ACCEPT", "DROP", "REJECT") or rule.ct_dnat is not None:
            self.skip(rule, "--ctorigdst/--ctorigdstport here has no equivalent")
            return None
        wanted = _port_range(rule.ct_orig.get("dport"))
        if "dport" in rule.ct_orig and wanted is None:
            self.skip(rule, f"--ctorigdstport {rule.ct_orig['dport']}: not a port or range")
            return None
        chain = _NAT_CHAINS.get(frame.builtin.lower(), "")
        feeding = [
            e
            for e in self.nat
            if (m := translated_match(e, self.family, chain)) is not None
            and isinstance(combine(merged, m), Match)
            and (wanted is None or _has_port(e, wanted))
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
        actions = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject"}
        self.dnat_rule(frame, rule, merged, actions[rule.target])
        others = [
            e
            for e in self.nat
            if e not in feeding
            and (m := translated_match(e, self.family, chain)) is not None
            and isinstance(combine(merged, m), Match)
        ]
        if others or merged.states:  # the dnat state also admits what they translate
            self.skip(
                rule,
                WIDER + "--ctorigdst/--ctorigdstport (the destination before a DNAT) "
                "imported as states: [dnat]: it also matches what another dnat/redirect "
                "entry translates to the same destination, or other states",
            )
        else:
            text = (
                "--ctorigdst/--ctorigdstport imported as states: [dnat]: the same for the "
                "rule set's dnat/redirect entries (only those translating from there reach "
                "this destination)"
            )
            self.notes.setdefault((rule.line, text), Skipped(rule.line, rule.text, text))
        return None


PORT_RE = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() also takes "²"


def _port_range(text: str | None) -> tuple[int, int] | None:
    """`--ctorigdstport`'s `P` or `LO:HI` (None: absent or not that)."""
    lo, _, hi = (text or "").partition(":")
    hi = hi or lo
    if not (PORT_RE.fullmatch(lo) and PORT_RE.fullmatch(hi) and int(lo) <= int(hi) <= 65535):
        return None
    return int(lo), int(hi)


def _has_port(entry: dict, wanted: tuple[int, int]) -> bool:
    """Whether the entry translates from a port of `wanted` (a range: any of them)."""
    ports = entry.get("dports") or []
    if not ports:
        return True
    for p in ports:
        lo, _, hi = p.partition("-")
        if int(lo) <= wanted[1] and wanted[0] <= int(hi or lo):
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
