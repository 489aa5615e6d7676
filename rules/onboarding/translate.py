"""iptables-save (+ ipset save) → a policy document with one rule set (pure: no Django).

The filter table is walked from INPUT, FORWARD and OUTPUT as netfilter walks it; user chains
are inlined at their jumps (the jump's matches combined with each inlined rule's), so the
rule set decides every packet as the dump does; a conditional RETURN before rules that
decide gives those rules its condition negated (`-s X -j RETURN` → `! -s X`). Each built-in
chain ends with a catch-all rule carrying its policy, so the rule set does not depend on the
device's default policy — except FORWARD where other software's chains (Docker's) decide
after Rampart's (a `forward_fallthrough` device): there the kernel's policy stays. Every rule is scoped to the dump's family
(IPv4 dumps → IPv4 only), and an IPv4 dump's rule set accepts IPv6, as the host did.

Nothing is dropped silently: every line is either translated (`translated`: line → rule
indexes) or reported in `skipped` with its reason; chains of other software (Docker,
kube-proxy) are listed in `foreign_chains`; translations that are close but not exact are
listed in `notes`. The nat table's DNAT/SNAT/MASQUERADE become NAT entries (nat.py); every
skipped line is ranked by what losing it does to verdicts
(losses.py), and what is not an iptables-save dump is refused (inputs.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from compiler import values as V

from .document import DocumentBuilder, Emitted
from .dumps import BUILTIN, Dump, IpSet, Match, ParsedRule, parse_ipset_save, parse_iptables_save
from .foreign import chain_owner, rule_interface_owner
from .inputs import check_dump
from .losses import rank
from .matches import NEVER, combine, negated
from .others import OthersMixin
from .results import ForeignChain, OnboardingResult, Skipped

VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject"}
# iptables-save's `--reject-with` (both families' spellings, and the long ICMP names
# iptables also accepts) → the document's `reject_with`
REJECT_WITH_OF = {
    spelled: name for fam in V.REJECT_WITH_FAMILY.values() for name, spelled in fam.items()
} | {"icmp6-adm-prohibited": "icmp-admin-prohibited"}


class Unflattenable(Exception):
    """A user chain whose rules cannot be inlined (e.g. a conditional RETURN)."""


@dataclass(frozen=True)
class _Frame:
    """Where a walk is: the chain, the built-in chain it started from, the matches of the
    jumps that led here, the chains on the way, and the line of the last jump."""

    chain: str
    builtin: str
    ctx: Match
    stack: tuple[str, ...]
    via: int | None


class _Translator(DocumentBuilder, OthersMixin):
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
        self.left_to_others: set[str] = set()  # built-ins whose policy stays the kernel's
        self.nat: list[dict] = []  # the rule set's NAT entries
        self.nat_translated: dict[int, int] = {}  # nat-table line → NAT entry index

    # ---- bookkeeping
    def skip(self, rule: ParsedRule, reason: str) -> None:
        self.skipped.setdefault((rule.line, reason), Skipped(rule.line, rule.text, reason))

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
            owners = self.foreign_owners(builtin) if builtin == "FORWARD" else []
            if not decides and owners:
                # other software's chains decide after Rampart's rules (forward_fallthrough,
                # which only FORWARD has): a catch-all here would run before them
                self.mark_policy(line, builtin, policy, owners)
            elif not decides:
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
        reached_by = self.skipped_jumps()
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
                elif chain in reached_by:
                    self.skip(
                        rule,
                        f"chain {chain} is reached only through line {reached_by[chain]}, "
                        "which is not imported",
                    )
                else:
                    self.skip(rule, f"chain {chain} is never reached from INPUT, FORWARD or OUTPUT")
        for rule in self.dump.other_tables:
            self.other_table(rule)
        for line, text, reason in self.dump.bad_lines:
            self.skipped.setdefault((line, reason), Skipped(line, text, reason))

    def skipped_jumps(self) -> dict[str, int]:
        """Chains that a skipped rule jumps to: chain → the first such line."""
        skipped = {line for line, _ in self.skipped}
        out: dict[str, int] = {}
        for rules in self.dump.chains.values():
            for rule in rules:
                if rule.line in skipped and rule.target in self.dump.chains:
                    out.setdefault(rule.target, rule.line)
        return out

    def emit(self, e: Emitted) -> int:
        self.emitted.append(e)
        return len(self.emitted) - 1

    def walk(
        self, chain: str, builtin: str, ctx: Match, stack: tuple[str, ...], via: int | None
    ) -> bool:
        """Emit the rules of `chain` for packets that got here matching `ctx`.

        Returns True when every such packet is decided here (nothing falls through).
        """
        frame = _Frame(chain, builtin, ctx, stack, via)
        rules = self.dump.chains.get(chain, [])
        pending_log: ParsedRule | None = None
        for i, rule in enumerate(rules):
            log, pending_log = pending_log, None
            if log is not None and not (rule.target in VERDICTS and not rule.error):
                self.skip(log, "LOG without a verdict of its own")
                log = None
            merged = self.merged(frame, rule)
            if merged is None:
                continue
            rest = rules[i + 1 :]
            if rule.target == "LOG":
                pending_log = self.log_rule(rule, rest)
                continue
            decided = self.step(frame, rule, merged, log, rest)
            if decided is not None:
                return decided
        return False

    def merged(self, frame: _Frame, rule: ParsedRule) -> Match | None:
        """The rule's match within the jump's context, or None when the rule is handled here
        (another owner's, unusable, contradicting the jump's matches)."""
        owner = rule_interface_owner(rule.text)
        if owner:
            self.foreign_rule(
                rule,
                f"{frame.chain} (rules naming {owner} interfaces)",
                owner,
                f"names a {owner} interface: {owner}'s rule, not imported",
            )
            return None
        if rule.error:
            if rule.target == "RETURN" and frame.chain != frame.builtin:
                raise Unflattenable(f"line {rule.line}: a RETURN whose match {rule.error}")
            self.skip(rule, rule.error)
            return None
        merged = combine(frame.ctx, rule.match)
        if merged is None:
            self.skip(rule, f"cannot be combined with the matches of the jump at line {frame.via}")
            return None
        if merged == NEVER:
            self.mark(rule, [])  # contradicts the jump's matches: no packet gets here
            return None
        assert isinstance(merged, Match)
        for note in rule.notes:
            self.note(rule.line, rule.text, note)
        return merged

    def step(
        self,
        frame: _Frame,
        rule: ParsedRule,
        merged: Match,
        log: ParsedRule | None,
        rest: list[ParsedRule],
    ) -> bool | None:
        """Translate one rule by its target; a bool ends the chain's walk with that answer."""
        target = rule.target
        if target in VERDICTS or (target == "RETURN" and frame.chain == frame.builtin):
            return self.verdict(frame, rule, merged, log, rest)
        if target == "RETURN":
            return self.user_return(frame, rule, rest)
        if target in self.dump.chains:
            return self.jump(frame, rule, merged, rest)
        if target is None:
            self.skip(rule, "no target: the rule only counts packets (or feeds a match module)")
        else:
            self.skip(rule, f"target {target} has no equivalent in the policy document")
        return None

    def verdict(
        self,
        frame: _Frame,
        rule: ParsedRule,
        merged: Match,
        log: ParsedRule | None,
        rest: list[ParsedRule],
    ) -> bool | None:
        """ACCEPT, DROP, REJECT (or RETURN from a built-in chain: its policy)."""
        builtin = frame.builtin
        action = VERDICTS.get(rule.target or "") or VERDICTS.get(
            self.dump.policies.get(builtin, ("ACCEPT", 0))[0], "accept"
        )
        emitted = Emitted(builtin.lower(), merged, action, rule.line, rule.comment)
        if log is not None:
            emitted.log, emitted.log_prefix = True, log.target_args.get("--log-prefix")
            self.mark(log, [len(self.emitted)])
        if rule.target == "REJECT":
            emitted.reject_with = self.reject_with(rule, merged)
        self.mark(rule, [self.emit(emitted)])
        if rule.match.is_empty():
            self.unreachable(rest, rule.line)
            return True
        return None

    def reject_with(self, rule: ParsedRule, merged: Match) -> str | None:
        """The document's `reject_with` for the dump's `--reject-with` (None: the default,
        port unreachable); a type without one is noted with the answer used instead."""
        given = rule.target_args.get("--reject-with", "")
        kind = REJECT_WITH_OF.get(given)
        if given and kind is None:
            self.note(
                rule.line,
                rule.text,
                f"rejected with {given} in the dump; imported as the default "
                f"({V.REJECT_WITH_FAMILY[self.family][V.REJECT_WITH_DEFAULT]})",
            )
        if kind == "tcp-reset" and merged.protocol != "tcp":
            return None  # iptables refuses it anyway; the default answers
        return None if kind == V.REJECT_WITH_DEFAULT else kind

    def log_rule(self, rule: ParsedRule, rest: list[ParsedRule]) -> ParsedRule | None:
        """A LOG rule, kept (returned) when the next rule is a verdict with the same match."""
        nxt = rest[0] if rest else None
        if nxt is not None and not nxt.error and nxt.target in VERDICTS and nxt.match == rule.match:
            return rule
        self.skip(
            rule,
            "LOG without a verdict of its own: Rampart logs the rules that decide "
            "(log: true on an accept/drop/reject rule)",
        )
        return None

    def user_return(self, frame: _Frame, rule: ParsedRule, rest: list[ParsedRule]) -> bool:
        """RETURN from a user chain: unconditional ends the chain; conditional only when
        nothing after it decides (otherwise the chain cannot be inlined)."""
        if rule.match.is_empty():
            self.mark(rule, [])
            self.unreachable(rest, rule.line)
            return False
        snap = self.snapshot()
        decides_after = self.walk_rest(
            frame.chain, frame.builtin, frame.ctx, frame.stack, frame.via, rest
        )
        if len(self.emitted) > snap[0] or decides_after:
            self.restore(snap)
            return self.negated_return(frame, rule, rest)
        self.mark(rule, [])
        self.note(
            rule.line,
            rule.text,
            "conditional RETURN with nothing deciding after it: no effect",
        )
        return False

    def negated_return(self, frame: _Frame, rule: ParsedRule, rest: list[ParsedRule]) -> bool:
        """A conditional RETURN before rules that decide: the rules after it get the
        RETURN's condition negated (`-s X -j RETURN` → `! -s X` on each), the same
        first-match meaning; a condition the document cannot negate makes the chain
        uninlinable."""
        opposite = negated(rule.match)
        if opposite is None:
            raise Unflattenable(
                f"line {rule.line}: a conditional RETURN whose condition cannot be negated "
                "(only one source, one destination or conntrack states can)"
            )
        ctx = combine(frame.ctx, opposite)
        if ctx is None:
            raise Unflattenable(
                f"line {rule.line}: a conditional RETURN whose negated condition cannot be "
                f"combined with the matches of the jump at line {frame.via}"
            )
        self.mark(rule, [])
        if ctx == NEVER:  # every packet here returns: the rules after it never apply
            self.unreachable(rest, rule.line)
            return False
        assert isinstance(ctx, Match)
        self.note(
            rule.line,
            rule.text,
            "conditional RETURN: the rules after it are imported for the packets it does "
            "not return (its condition negated)",
        )
        self.walk_rest(frame.chain, frame.builtin, ctx, frame.stack, rule.line, rest)
        return False  # the returned packets fall through to the caller

    def jump(
        self, frame: _Frame, rule: ParsedRule, merged: Match, rest: list[ParsedRule]
    ) -> bool | None:
        """A jump or goto to a user chain: its rules inlined with the jump's matches."""
        target = rule.target or ""
        chain, builtin = frame.chain, frame.builtin
        owner = chain_owner(target)
        if owner:
            self.foreign_rule(
                rule, target, owner, f"jumps to {target}, a chain of {owner}: not imported"
            )
            return None
        if target in frame.stack or target == chain:
            self.skip(rule, f"jump to {target} makes a loop")
            return None
        unconditional = rule.match.is_empty()
        snap = self.snapshot()
        start = len(self.emitted)
        try:
            decides = self.walk(target, builtin, merged, (*frame.stack, chain), rule.line)
        except Unflattenable as exc:
            self.restore(snap)
            self.unflattenable[target] = str(exc)
            self.skip(rule, f"jump to {target} cannot be inlined: {exc}")
            return None
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
            self.skip(rule, f"conditional goto to {target}, which can fall through: no equivalent")
            return None
        self.mark(rule, list(range(start, len(self.emitted))))
        if unconditional and (decides or rule.goto):
            self.unreachable(rest, rule.line)
            return decides
        return None

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


def translate_iptables_save(
    text: str,
    ipset_text: str = "",
    *,
    ruleset: str = "onboarded",
    family: int | None = None,
    keep_ipv6_open: bool = True,
) -> OnboardingResult:
    """Translate a dump into a document with one rule set; see the module docstring.

    NotADump when `text` is empty or not iptables-save output. `keep_ipv6_open`: an
    IPv4 dump's rule set also accepts all IPv6 (what the host did without ip6tables rules).
    """
    V.validate_name(ruleset)
    check_dump(text)
    dump = parse_iptables_save(text, family)
    sets, set_skips = parse_ipset_save(ipset_text) if ipset_text else ({}, [])
    t = _Translator(dump, sets, ruleset)
    t.run()
    doc = t.document()
    skipped = sorted(t.skipped.values(), key=lambda s: (s.source, s.line, s.reason))
    skipped += [Skipped(line, raw, reason, "ipset save") for line, raw, reason in set_skips]
    policies = {c.lower(): VERDICTS.get(p, "accept") for c, (p, _) in dump.policies.items()}
    rank(dump, skipped, {line for c in t.foreign.values() for line in c.lines})
    ipv6 = t.keep_ipv6(doc) if dump.family == 4 and keep_ipv6_open else ""
    if t.nat:
        doc["rulesets"][0]["nat"] = t.nat
    return OnboardingResult(
        doc,
        skipped,
        sorted(t.foreign.values(), key=lambda c: c.name),
        sorted(t.notes.values(), key=lambda s: (s.source, s.line)),
        t.translated,
        policies,
        dump.family,
        ipv6,
        t.nat_translated,
    )
