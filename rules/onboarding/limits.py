"""Per-source limits in a dump → `rate_limit_per_source` (pure: no Django).

`-m hashlimit --hashlimit-upto R --hashlimit-mode srcip` is the document's per-source
limit itself (dumps.py reads it into the rule's match). Two patterns decide only for the
sources *over* a limit, which the document says the other way round:

- ufw's `limit`: `-m recent --set` records every new connection of a source, the next rule
  (`-m recent --update --seconds S --hitcount H`) refuses the source once it made H in S
  seconds, and the rule after it accepts the rest;
- `-m hashlimit --hashlimit-above R … -j DROP` followed by a rule accepting the same packets.

Both become an `accept` with `rate_limit_per_source` (the sources within their limit) put
before the refusing rule, which then refuses what is left: the sources over it. That is
the same first-match meaning only because the next rule would have accepted those
packets anyway, so nothing else is translated this way. `-m recent`'s sliding window
becomes a token bucket (burst H-1, refilled at (H-1)/S): the difference is noted with its
verdict class. Every other `-m recent` rule is reported as before.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace

from compiler import per_source as PS

from .document import Emitted
from .dumps import Dump, Match, ParsedRule
from .losses import PERMISSIVE
from .matches import combine
from .results import Skipped

_UNITS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))
RECENT_SET = (
    "-m recent --set only records the source for a later -m recent rule of the same list, "
    "which is not imported"
)


def window_rate(count: int, seconds: int) -> tuple[str, bool]:
    """`count` per `seconds` as a document rate, and whether it is exact."""
    for unit, secs in _UNITS:
        if count * secs % seconds == 0:
            return f"{count * secs // seconds}/{unit}", True
    return f"{max(1, count * 86400 // seconds)}/day", False


def _prefix(mask: str) -> int | None:
    """`--mask 255.255.255.0` as a prefix length (None: not a prefix mask)."""
    try:
        return ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        try:
            return ipaddress.ip_network(f"::/{mask}").prefixlen
        except ValueError:
            return None


class LimitsMixin:
    """Part of the translator (translate._Translator): the over-the-limit patterns."""

    dump: Dump
    family: int
    translated: dict[int, list[int]]
    skipped: dict[tuple[int, str], Skipped]
    notes: dict[tuple[int, str], Skipped]

    # the translator's own (declared for the type checker)
    skip: Callable[[ParsedRule, str], None]
    mark: Callable[[ParsedRule, list[int]], None]
    note: Callable[..., None]
    step: Callable[..., bool | None]
    emit: Callable[..., int]

    def over_limit(self, frame, rule: ParsedRule, merged: Match, log, rest) -> bool | None:
        """A rule with `-m recent` or `--hashlimit-above` (see the module docstring)."""
        if rule.recent is not None and rule.recent.get("action") == "set" and not rule.target:
            self.skip(rule, RECENT_SET)  # until its --update rule is imported
            return None
        limit, feeder, problem = self.limit_of(frame.chain, rule)
        if problem is None:
            problem = self.accepted_after(rule, rest)
        if problem is not None or limit is None:
            self.skip(rule, problem or "no limit")
            return None
        within = combine(merged, Match(per_source=limit))
        if not isinstance(within, Match):
            self.skip(rule, "cannot carry a second per-source limit (the jump has one)")
            return None
        index = self.emit(Emitted(frame.builtin.lower(), within, "accept", rule.line, rule.comment))
        self.mark(rule, [index])
        if feeder is not None:
            for key in [k for k in self.skipped if k[0] == feeder.line]:
                del self.skipped[key]
            self.mark(feeder, [])
            self.note(
                feeder.line,
                feeder.text,
                f"-m recent --set folded into line {rule.line}'s rate_limit_per_source",
            )
        return self.step(frame, replace(rule, recent=None, above=None), merged, log, rest)

    def limit_of(
        self, chain: str, rule: ParsedRule
    ) -> tuple[PS.PerSourceLimit | None, ParsedRule | None, str | None]:
        """(the per-source limit the rule refuses above, the --set rule feeding it, or why
        the rule has no equivalent)."""
        if rule.above is not None:
            return rule.above, None, None
        recent = rule.recent or {}
        opts = " ".join(f"--{k} {v}".strip() for k, v in recent.items() if k != "action")
        what = f"-m recent --{recent.get('action', '?')} {opts}".strip()
        if recent.get("action") not in ("update", "rcheck") or "hitcount" not in recent:
            return None, None, f"{what} has no equivalent in the policy document"
        if "rdest" in recent or "rttl" in recent:
            return None, None, f"{what}: a per-destination or TTL check has no equivalent"
        feeder = self.recent_feeder(chain, rule)
        if feeder is None:
            return None, None, f"{what}: no -m recent --set of the same list before it"
        hits, seconds = int(recent["hitcount"]), int(recent.get("seconds") or 0)
        if hits < 2 or seconds < 1:
            return None, None, f"{what}: only --seconds S --hitcount H (H ≥ 2) has an equivalent"
        rate, exact = window_rate(hits - 1, seconds)
        data: dict = {"rate": rate, "burst": hits - 1}
        prefix = _prefix(recent.get("mask", "")) if "mask" in recent else None
        if prefix is not None and prefix != PS.PREFIX_MAX[self.family]:
            data[f"ipv{self.family}_prefix"] = prefix
        try:
            limit = PS.parse(data)
        except ValueError as exc:
            return None, None, f"{what}: {exc}"
        self.recent_notes(rule, recent, limit, exact)
        return limit, feeder, None

    def recent_notes(self, rule: ParsedRule, recent: dict, limit, exact: bool) -> None:
        name = recent.get("name", "DEFAULT")
        shared = [
            r.line
            for rules in self.dump.chains.values()
            for r in rules
            if r.recent is not None
            and r.line != rule.line
            and r.recent.get("action") in ("update", "rcheck")
            and r.recent.get("name", "DEFAULT") == name
        ]
        text = (
            f"-m recent (at most {limit.burst} new connections of a source in any "
            f"{recent.get('seconds')} s, refused attempts counted) imported as a token "
            f"bucket per source: burst {limit.burst}, refilled at {limit.rate}"
            + ("" if exact else " (rounded)")
            + ": a source that keeps trying is let in again at that rate where the window "
            "would keep refusing it"
        )
        if shared:
            text += (
                f"; the list {name!r} is shared with line(s) {', '.join(map(str, shared))}, "
                "the buckets are per rule"
            )
        self.notes.setdefault(
            (rule.line, text), Skipped(rule.line, rule.text, text, impact=PERMISSIVE)
        )

    def recent_feeder(self, chain: str, rule: ParsedRule) -> ParsedRule | None:
        """The `--set` rule of the same list before `rule` in its chain, recording at least
        the packets `rule` checks."""
        recent = rule.recent or {}
        key = (recent.get("name", "DEFAULT"), recent.get("mask"), "rdest" in recent)
        rules = self.dump.chains.get(chain, [])
        for other in reversed(rules[: rules.index(rule)] if rule in rules else []):
            r = other.recent
            if r is None or r.get("action") != "set" or other.target or other.error:
                continue
            if (r.get("name", "DEFAULT"), r.get("mask"), "rdest" in r) != key:
                continue
            if combine(rule.match, other.match) == rule.match:
                return other
        return None

    def accepted_after(self, rule: ParsedRule, rest: list[ParsedRule]) -> str | None:
        """None when the rule right after `rule` accepts every packet `rule` matches (so
        the sources within the limit are accepted either way), else why not."""
        nxt = rest[0] if rest else None
        if (
            nxt is None
            or nxt.error
            or nxt.recent is not None
            or nxt.above is not None
            or not self.accepts_all(nxt.target or "", frozenset())
            or combine(rule.match, nxt.match) != rule.match
        ):
            return (
                "a rule refusing the sources over a limit is imported only when the next "
                "rule accepts the same packets (ufw's limit): here it does not"
                + (" (-m recent)" if rule.recent is not None else " (-m hashlimit)")
            )
        return None

    def accepts_all(self, target: str, seen: frozenset[str]) -> bool:
        """ACCEPT, or a chain whose first deciding rule accepts unconditionally."""
        if target == "ACCEPT":
            return True
        if target not in self.dump.chains or target in seen:
            return False
        for r in self.dump.chains[target]:
            if r.target == "LOG" or r.target is None:
                continue
            if r.error or r.recent is not None or r.above is not None or not r.match.is_empty():
                return False
            return self.accepts_all(r.target, seen | {target})
        return False
