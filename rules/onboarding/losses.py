"""Every untranslated line ranked by what losing it does to verdicts (pure: no Django).

A lost ACCEPT makes the migrated host more restrictive (and, if it could admit ssh or the
agent port, risks locking the administrators out); a lost DROP or REJECT makes it more
permissive; a lost jump does what the chain it reaches does. Logging, counting, lines no
packet reaches and other software's chains (left to their owner) are verdict-neutral, and
so are the rules of a chain reached only through a lost jump: the jump's line carries them.
"""

from __future__ import annotations

from compiler import values as V

from .dumps import BUILTIN, Dump, ParsedRule
from .results import Skipped

PERMISSIVE, RESTRICTIVE, MIXED, NEUTRAL = (
    "more permissive",
    "more restrictive",
    "more permissive and more restrictive",
    "verdict-neutral",
)
LOCKOUT_PORTS = (22, 8745)  # ssh and the agent's default port
_NAT_LOST = {"DNAT", "REDIRECT", "SNAT", "MASQUERADE", "NETMAP"}
# unreachable, logging or counting only; other software's chains; rules of a chain that is
# never reached, or reached only through a lost jump (whose line carries the loss)
# a line translated wider than it was (ctdnat.py): what it now also admits (or refuses)
WIDER = "translated wider: "
_NEUTRAL_REASONS = ("unreachable:", "LOG without", "no target:", "chain ", "in chain ")


class _Ranker:
    def __init__(self, dump: Dump, foreign_lines: set[int]) -> None:
        self.dump = dump
        self.foreign_lines = foreign_lines
        self.by_line = {r.line: r for rules in dump.chains.values() for r in rules}
        self.by_line.update({r.line: r for r in dump.other_tables})
        self.from_input = self.reachable("INPUT")

    def reachable(self, start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for rule in self.dump.chains.get(todo.pop(), []):
                if rule.target in self.dump.chains and rule.target not in seen:
                    seen.add(rule.target)
                    todo.append(rule.target)
        return seen

    def verdicts(self, rule: ParsedRule, seen: frozenset[str] = frozenset()) -> set[str]:
        """What the rule (and the chains it jumps to) can decide: accept and/or drop."""
        target = rule.target or ""
        if target == "ACCEPT":
            return {"accept"}
        if target in ("DROP", "REJECT"):
            return {"drop"}
        # RETURN: the caller's next rules decide, as they do when the jump here is lost
        if target in self.dump.chains and target not in seen:
            out: set[str] = set()
            for inner in self.dump.chains[target]:
                out |= self.verdicts(inner, seen | {target})
            return out
        return set()

    def impact(self, s: Skipped) -> str:
        rule = self.by_line.get(s.line)
        if s.source != "iptables-save" or rule is None or s.line in self.foreign_lines:
            return NEUTRAL
        if rule.table == "nat":
            if s.reason.startswith(_NEUTRAL_REASONS):
                return NEUTRAL
            return self.nat_impact(rule.target or "", frozenset())
        if rule.table != "filter":
            return PERMISSIVE if rule.target in ("DROP", "REJECT") else NEUTRAL
        if s.reason.startswith(_NEUTRAL_REASONS):
            return NEUTRAL
        if s.reason.startswith(WIDER):
            return PERMISSIVE if rule.target == "ACCEPT" else RESTRICTIVE
        found = self.verdicts(rule)
        if found == {"accept"}:
            return RESTRICTIVE
        if found == {"drop"}:
            return PERMISSIVE
        return MIXED if found else NEUTRAL

    def nat_impact(self, target: str, seen: frozenset[str]) -> str:
        """A lost nat-table rule: a lost translation (or a jump to a chain holding one)
        refuses the forwarded service; a lost ACCEPT (no NAT for those packets) lets the
        rules after it translate them: either way."""
        if target in _NAT_LOST:
            return RESTRICTIVE
        if target == "ACCEPT":
            return MIXED
        if target in seen:
            return NEUTRAL
        chain = [r for r in self.dump.other_tables if r.table == "nat" and r.chain == target]
        found = {self.nat_impact(r.target or "", seen | {target}) for r in chain}
        if not found - {NEUTRAL}:
            return NEUTRAL
        return RESTRICTIVE if found - {NEUTRAL} == {RESTRICTIVE} else MIXED

    def lockout(self, s: Skipped, impact: str) -> bool:
        """A lost accept that could admit tcp to ssh or the agent port on INPUT."""
        rule = self.by_line.get(s.line)
        if impact not in (RESTRICTIVE, MIXED) or rule is None or rule.table != "filter":
            return False
        if rule.chain in BUILTIN and rule.chain != "INPUT" or rule.chain not in self.from_input:
            return False
        m = rule.match
        if m.protocol not in (None, "tcp"):
            return False
        ranges = [V.parse_port(p) for p in m.dports]
        return not ranges or any(lo <= p <= hi for lo, hi in ranges for p in LOCKOUT_PORTS)


def rank(dump: Dump, skipped: list[Skipped], foreign_lines: set[int]) -> None:
    """Set `impact` and `lockout` on every skipped line."""
    ranker = _Ranker(dump, foreign_lines)
    for s in skipped:
        s.impact = ranker.impact(s)
        s.lockout = ranker.lockout(s, s.impact)


def describe(s: Skipped) -> str:
    """One loss in a sentence: `line 12 (more restrictive; LOCKOUT RISK ...): reason: text`."""
    risk = "; LOCKOUT RISK: could admit ssh (22) or the agent port (8745)" if s.lockout else ""
    return f"line {s.line} ({s.impact}{risk}): {s.reason}: {s.text.strip()}"


def refusal(losses: list[Skipped]) -> str:
    """Why an import with verdict-changing losses is refused, and how to go ahead."""
    return (
        f"{len(losses)} untranslated line(s) change verdicts on the migrated host "
        f"({sum(s.lockout for s in losses)} with a lockout risk); review them and import "
        "again with accept_losses=1 (CLI: --accept-losses) to accept them"
    )
