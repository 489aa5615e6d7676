"""iptables-save (+ ipset save) → a policy document with one rule set (pure: no Django).

The filter table is walked from INPUT, FORWARD and OUTPUT as netfilter walks it; user chains
are inlined at their jumps (the jump's matches combined with each inlined rule's), so the
rule set decides every packet as the dump does; a conditional RETURN before rules that
decide gives those rules its condition negated (`-s X -j RETURN` → `! -s X`); a rate limit
on a jump (one bucket there) is copied only onto a single inlined rule matching every packet
of the jump, else the jump is a loss (shared_bucket_problem). Each built-in
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
import re
from dataclasses import dataclass, replace

from compiler import values as V

from .ctdnat import CtDnatMixin
from .document import DocumentBuilder, Emitted
from .dumps import BUILTIN, Dump, IpSet, Match, ParsedRule, parse_ipset_save, parse_iptables_save
from .foreign import chain_owner, rule_interface_owner
from .inputs import EXPECTED, NotADump, check_dump
from .limits import LimitsMixin
from .losses import MIXED, PERMISSIVE, RESTRICTIVE, rank
from .matches import NEVER, combine, negated
from .nat import NAT_BUILTIN, NAT_TARGETS, nat_entry
from .nftjson import RULE_NOTE, looks_like_nft_json, parse_nft_json
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


class _Translator(DocumentBuilder, OthersMixin, LimitsMixin, CtDnatMixin):
    POLICY_RULES = True  # the built-in chains' policies become rules (not in the nat table)
    TABLE_NOTE = ""  # how reasons name the table (the filter table: not named)

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
        self.nat_pass()
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
        self.report_unwalked("INPUT, FORWARD or OUTPUT")
        for rule in self.dump.other_tables:
            if rule.table != "nat":  # the nat pass accounted for those
                self.other_table(rule)
        for line, text, reason in self.dump.bad_lines:
            self.skipped.setdefault((line, reason), Skipped(line, text, reason))

    def nat_pass(self) -> None:
        """The nat table, walked like the filter table (_NatTranslator): its entries and
        its accounting join this translator's."""
        nat = _NatTranslator(self.dump, self.ruleset)
        nat.run()
        self.nat = list(nat.emitted)  # type: ignore[arg-type]  # NAT entries there
        for line, idx in nat.translated.items():
            if idx:
                self.nat_translated[line] = idx[0]
            else:
                self.translated[line] = []
        self.skipped.update(nat.skipped)
        self.notes.update(nat.notes)
        for name, fc in nat.foreign.items():
            self.foreign.setdefault(name, fc)

    def report_unwalked(self, builtins: str) -> None:
        """Every rule the walk did not reach: other software's, in an uninlinable chain,
        behind a lost jump, or never reached from `builtins`."""
        reached_by = self.skipped_jumps()
        for chain, rules in self.dump.chains.items():
            owner = chain_owner(chain)
            for rule in rules:
                if rule.line in self.translated or any(k[0] == rule.line for k in self.skipped):
                    continue
                if owner:
                    self.foreign_rule(
                        rule,
                        chain,
                        owner,
                        f"chain {chain}{self.TABLE_NOTE} belongs to {owner}: not imported",
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
                    self.skip(rule, f"chain {chain} is never reached from {builtins}")

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
        if rule.recent is not None or rule.above is not None:
            if target == "RETURN" and frame.chain != frame.builtin:
                raise Unflattenable(f"line {rule.line}: a RETURN on a rate limit per source")
            return self.over_limit(frame, rule, merged, log, rest)
        if rule.ct_orig:
            return self.ct_orig_rule(frame, rule, merged, log, rest)
        if rule.ct_dnat is not None:
            if target == "RETURN" and frame.chain != frame.builtin:
                raise Unflattenable(f"line {rule.line}: a RETURN on --ctstate DNAT")
            return self.ct_dnat_rules(frame, rule, merged, log, rest)
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
        if rule.goto and not decides and chain == builtin and self.POLICY_RULES:
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
        problem = self.shared_bucket_problem(rule, merged, self.emitted[start:])
        if problem is not None:
            self.restore(snap)
            self.skip(rule, problem)
            return None
        self.mark(rule, list(range(start, len(self.emitted))))
        if unconditional and (decides or rule.goto):
            self.unreachable(rest, rule.line)
            return decides
        return None

    def shared_bucket_problem(
        self, rule: ParsedRule, merged: Match, inlined: list[Emitted]
    ) -> str | None:
        """Why a rate limit on a jump cannot be copied onto the rules it inlines (None: it
        can, or there is none).

        On the host the jump's limit is one bucket, and every packet reaching the jump takes
        a token before the chain's rules look at it; a copy on each inlined rule is a bucket
        per rule (the document cannot share one between rules), taken only by the packets
        that rule matches. The copy is exact only when one rule comes out and it matches
        exactly the packets of the jump (or none comes out: a bucket that decides nothing).
        """
        limit = rule.match
        if limit.rate_limit is None and limit.per_source is None:
            return None
        if not inlined or (
            len(inlined) == 1 and isinstance(inlined[0], Emitted) and inlined[0].match == merged
        ):
            return None
        kind = "a rate limit" if limit.rate_limit is not None else "a per-source rate limit"
        lines = sorted({e.line for e in inlined if isinstance(e, Emitted)})
        where = ", ".join(f"line {n}" for n in lines)
        head = (
            f"jump to {rule.target} with {kind}: not importable exactly: on the host it is one "
            "token bucket at the jump, taken by every packet that reaches the jump"
        )
        if len(inlined) > 1:
            return (
                f"{head}; inlined, the {len(inlined)} rules {rule.target} becomes ({where}) "
                "would each have a bucket of their own, and the policy document cannot share "
                "one bucket between rules"
            )
        return (
            f"{head}; inlined, the one rule {rule.target} becomes ({where}) matches fewer "
            "packets than the jump, and the others would no longer take tokens"
        )

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


class _NatTranslator(_Translator):
    """The nat table walked as netfilter walks it for a connection's first packet: from
    PREROUTING, OUTPUT and POSTROUTING, user chains (firewalld's `PREROUTING_direct` and
    zone chains, shorewall's `net_dnat`) inlined at their jumps with the jump's matches, a
    conditional RETURN's condition negated on the rules after it — the filter walk's own
    code. Each DNAT/SNAT/MASQUERADE/REDIRECT reached becomes a NAT entry of the built-in
    chain it was reached from (in `emitted`); an ACCEPT (no NAT for those packets) has no
    equivalent and is reported."""

    POLICY_RULES = False  # a nat chain's policy (ACCEPT) translates nothing
    TABLE_NOTE = " (nat table)"

    def __init__(self, dump: Dump, ruleset: str):
        chains: dict[str, list[ParsedRule]] = {name: [] for name in dump.nat_chains}
        for rule in dump.other_tables:
            if rule.table == "nat":
                chains.setdefault(rule.chain, []).append(rule)
        super().__init__(Dump(chains=chains, family=dump.family), {}, ruleset)

    def run(self) -> None:
        for builtin in NAT_BUILTIN:
            if builtin in self.dump.chains:
                self.walk(builtin, builtin, Match(), (), None)
        self.report_unwalked("PREROUTING, OUTPUT or POSTROUTING")

    def merged(self, frame: _Frame, rule: ParsedRule) -> Match | None:
        # Docker's `-m addrtype --dst-type LOCAL -j DOCKER`, its MASQUERADE of docker0
        owner = chain_owner(rule.target or "") or rule_interface_owner(rule.text)
        if owner:
            self.foreign_rule(
                rule,
                f"{rule.chain} (nat table, rules of {owner})",
                owner,
                f"{owner}'s rule in the nat table: not imported",
            )
            return None
        return super().merged(frame, rule)

    def step(
        self,
        frame: _Frame,
        rule: ParsedRule,
        merged: Match,
        log: ParsedRule | None,
        rest: list[ParsedRule],
    ) -> bool | None:
        target = rule.target or ""
        if target == "DNAT" and rule.target_args.get("--to-destination", "").startswith(":"):
            rule = self.port_only_dnat(rule)
            target = "REDIRECT"
        if target in NAT_TARGETS:
            entry = nat_entry(replace(rule, chain=frame.builtin, match=merged), self.family)
            if isinstance(entry, str):
                self.skip(rule, f"nat table: {entry}")
                return None
            self.mark(rule, [self.emit(entry)])  # type: ignore[arg-type]  # NAT entries
            if merged == frame.ctx and rule.match.is_empty():
                self.unreachable(rest, rule.line)
                return True
            return None
        if target == "ACCEPT" or (target == "RETURN" and frame.chain == frame.builtin):
            self.skip(
                rule,
                f"nat table: {target} (these packets are not translated by the rules after "
                "it) has no equivalent in the document's NAT rules",
            )
            return None
        if target in ("DROP", "REJECT", "LOG") or rule.recent is not None:
            self.skip(rule, f"nat table: target {target} has no equivalent")
            return None
        return super().step(frame, rule, merged, log, rest)

    def port_only_dnat(self, rule: ParsedRule) -> ParsedRule:
        """`DNAT --to-destination :8080` (firewalld's forward-port without toaddr): the
        port changes, the address stays — a `redirect` for packets addressed to the host."""
        port = rule.target_args["--to-destination"][1:]
        text = (
            f"DNAT to port {port} of the same address imported as a redirect: the same for "
            "packets addressed to this host; a packet routed through it would be delivered "
            "to the host instead of forwarded"
        )
        self.notes.setdefault((rule.line, text), Skipped(rule.line, rule.text, text, impact=MIXED))
        return replace(rule, target="REDIRECT", target_args={"--to-ports": port})


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
    if looks_like_nft_json(text):
        return translate_nft_json(text, ruleset=ruleset, keep_ipv6_open=keep_ipv6_open)
    check_dump(text)
    dump = parse_iptables_save(text, family)
    sets, set_skips = parse_ipset_save(ipset_text) if ipset_text else ({}, [])
    return translate_dump(dump, sets, set_skips, ruleset, keep_ipv6_open)


def translate_dump(
    dump: Dump,
    sets: dict[str, IpSet],
    set_skips: list[tuple[int, str, str]],
    ruleset: str,
    keep_ipv6_open: bool,
) -> OnboardingResult:
    """One parsed dump (iptables-save's, or one family of nft's JSON) → the result."""
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


def translate_nft_json(
    text: str, *, ruleset: str = "onboarded", keep_ipv6_open: bool = True
) -> OnboardingResult:
    """`nft -j list ruleset` → one rule set (nftjson.py reads it): each family translated
    as its own dump, IPv4's rules then IPv6's (each scoped to its family, so the order
    between them changes nothing), every JSON item accounted for by its position."""
    V.validate_name(ruleset)
    try:
        parsed = parse_nft_json(text)
    except ValueError as exc:
        raise NotADump(
            f"given JSON that is not `nft -j list ruleset`'s: {exc}; {EXPECTED}"
        ) from None
    if not parsed.families:
        raise NotADump(
            "given `nft -j list ruleset` output without a rule in an ip, ip6 or inet table: "
            f"nothing to onboard; {EXPECTED}"
        )
    results = [
        translate_dump(
            parsed.dumps[fam],
            parsed.sets[fam],
            [],
            ruleset,
            keep_ipv6_open and fam == 4 and 6 not in parsed.families,
        )
        for fam in sorted(parsed.families)
    ]
    inet_notes = _inet_limit_notes(parsed.dumps, results) if len(results) == 2 else []
    merged = _merge(results)
    merged.notes += inet_notes
    for line, text_, reason, impact in parsed.skipped:
        merged.skipped.append(Skipped(line, text_, reason, impact=impact))
    for line, text_, reason in parsed.notes:
        merged.notes.append(Skipped(line, text_, reason))
    merged.skipped.sort(key=lambda s: (s.line, s.reason))
    merged.notes.sort(key=lambda s: (s.line, s.reason))
    for s in (*merged.skipped, *merged.notes):
        if s.source == "iptables-save":
            s.source = "nft -j list ruleset"
        s.reason = _LINE.sub(rf"{RULE_NOTE} \1", s.reason)
    _rename_source(merged.document, sorted(parsed.families))
    return merged


INET_LIMIT = (
    "limit in an inet table: on the host one bucket for IPv4 and IPv6 packets together; "
    "imported as rate_limit on IPv4's rule and on IPv6's, a bucket per family (the document "
    "has no other): up to twice the rate while both families send"
)
_LIMIT_IMPACT = {"ACCEPT": PERMISSIVE, "DROP": RESTRICTIVE, "REJECT": RESTRICTIVE}


def _inet_limit_notes(dumps: dict[int, Dump], results: list[OnboardingResult]) -> list[Skipped]:
    """A note on every nft rule whose own `limit` was imported for both families: an
    inet table's rule (the only kind in both families' dumps), one bucket on the host."""

    def limited(dump: Dump, result: OnboardingResult) -> dict[int, ParsedRule]:
        rules = result.document["rulesets"][0]["rules"]
        return {
            r.line: r
            for chain in dump.chains.values()
            for r in chain
            if r.match.rate_limit
            and any("rate_limit" in rules[i] for i in result.translated.get(r.line, []))
        }

    v4, v6 = (limited(dumps[fam], res) for fam, res in zip((4, 6), results, strict=True))
    return [
        Skipped(
            line,
            v4[line].text,
            INET_LIMIT,
            impact=_LIMIT_IMPACT.get(v4[line].target or "", MIXED),
        )
        for line in sorted(v4.keys() & v6.keys())
    ]


def _merge(results: list[OnboardingResult]) -> OnboardingResult:
    """Results of one rule set per family → one: rules, NAT entries and groups in family
    order, the accounting's indexes shifted, the reports united."""
    first = results[0]
    doc = first.document
    rs = doc["rulesets"][0]
    for other in results[1:]:
        ors = other.document["rulesets"][0]
        shift, nat_shift = len(rs["rules"]), len(rs.get("nat", []))
        rs["rules"] += ors["rules"]
        if ors.get("nat"):
            rs["nat"] = rs.get("nat", []) + ors["nat"]
        names = {g["name"] for g in doc.get("address_groups", [])}
        extra = [g for g in other.document.get("address_groups", []) if g["name"] not in names]
        if extra:
            doc["address_groups"] = doc.get("address_groups", []) + extra
        for line, idx in other.translated.items():
            first.translated.setdefault(line, [])
            first.translated[line] += [i + shift for i in idx]
        for line, i in other.nat_translated.items():
            first.nat_translated.setdefault(line, i + nat_shift)
        seen = {(s.line, s.reason) for s in first.skipped}
        first.skipped += [s for s in other.skipped if (s.line, s.reason) not in seen]
        seen = {(s.line, s.reason) for s in first.notes}
        first.notes += [s for s in other.notes if (s.line, s.reason) not in seen]
        known = {c.name for c in first.foreign_chains}
        first.foreign_chains += [c for c in other.foreign_chains if c.name not in known]
        first.ipv6 = first.ipv6 or other.ipv6
    return first


_LINE = re.compile(r"\bline (\d+)")


def _rename_source(doc: dict, families: list[int]) -> None:
    """Comments and the description name the nft item, not an iptables-save line."""
    rs = doc["rulesets"][0]
    rs["description"] = (
        "imported from nft -j list ruleset (" + ", ".join(f"IPv{f}" for f in families) + ")"
    )
    for entry in (*rs["rules"], *rs.get("nat", [])):
        if "comment" in entry:
            entry["comment"] = entry["comment"].replace("iptables-save line", RULE_NOTE)
