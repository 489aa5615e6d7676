"""A rule set's own chains (`RPT-I-…`, `RPT-F-…`, `RPT-O-…`), built once per family pair.

A rule set's chain only holds terminating verdicts (and LOG), so falling off its end
continues with the next rule set: the first-match semantics of the document. A rule set
has the same chain on every device, so what was built is kept (cache.py) and reused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ..document import PolicyDocument, Rule, RuleSet, fallback_ids
from ..ir import LOG, AddrMatch, Chain, RuleInfo
from ..ir import Rule as IRRule
from ..per_source import bucket_name
from ..resolve import PortRanges, Resolver
from ..shared_limit import bucket_name as limit_bucket
from . import segments as S
from .blocks import BlockCompiler
from .cache import RULESET_CACHE, Built
from .expand import TARGET, Expander
from .names import CHAIN_LETTER, ruleset_chain
from .tags import rule_tagger
from .zones import interface_pairs

_UNSET: Any = object()
# the last second iptables' `--datestop` accepts (it refuses years after 2038)
TIME_MATCH_LAST = datetime(2038, 12, 31, 23, 59, 59, tzinfo=UTC)
# NamedTuple instances without the Python-level __new__ (half the cost; hot loop only)
_new_tuple = tuple.__new__


def kernel_until(expires_at: datetime) -> datetime | None:
    """The whole second (UTC) from which the kernel's time match stops matching a rule
    that expires at `expires_at`: the second it falls in, so the kernel never lets the rule
    live past its expiry (at most a fraction of a second early). None when iptables cannot
    spell it (after 2038): the rule then leaves only with the compile after its expiry."""
    until = expires_at.astimezone(UTC).replace(microsecond=0)
    return until if until - timedelta(seconds=1) <= TIME_MATCH_LAST else None


class _Chains(dict):
    """Chains by name, each made on first use."""

    def __missing__(self, name: str) -> Chain:
        chain = self[name] = Chain(name)
        return chain


class RulesetLowerer:
    """Lowers the rule sets of one compile; `infos` collects where each rule came from."""

    def __init__(
        self, doc: PolicyDocument, now: datetime, resolver: Resolver, expander: Expander
    ) -> None:
        self.doc = doc
        self.now = now
        self.resolver = resolver
        self.expander = expander
        self.options = expander.options
        self.infos: dict[str, RuleInfo] = {}
        self._built: dict[str, dict[int, dict[str, Chain]]] = {}
        self._objects_key: tuple | None = None
        self._ports: dict[tuple[str, ...], PortRanges | None] = {}
        self._doc_ports = doc.ports
        self._zones = doc.by_name["zones"]

    def chains(self, rs: RuleSet, family: int) -> dict[str, Chain]:
        """The rule set's chains in one family (both families are built in one pass)."""
        built = self._built.get(rs.name)
        if built is None:
            built = self._built[rs.name] = self._cached(rs)
        return built[family]

    def _cached(self, rs: RuleSet) -> dict[int, dict[str, Chain]]:
        """`_build`, with what an earlier compile in this process built for a rule set of
        this name (see `RulesetCache`): all of it if nothing it depends on changed, else
        the rules that did not change (same rule, same objects, same options)."""
        expiring = tuple(r.expires_at > self.now for r in rs.rules if r.expires_at is not None)
        if self._objects_key is None:
            doc = self.doc
            self._objects_key = (
                doc.addresses,
                doc.address_groups,
                doc.services,
                doc.service_groups,
                doc.zones,
            )
        opts = self.options
        key = (
            rs.name,
            opts.ipset_threshold,
            opts.log_rate_limit,
            opts.log_burst,
            S.SEGMENT_MAX,
            S.SEGMENT_EVERY,
            opts.set_compile,
            opts.set_types,
            opts.set_min_rules,
            opts.set_range_max,
            opts.set_guard_min,
            opts.set_elements_max,
        )
        exact = (rs.rules, expiring, self._objects_key)
        sets = self.expander.sets
        entry = RULESET_CACHE.get(key)
        if entry is not None and entry.exact == exact:
            self.infos.update(entry.infos)
            sets.update(entry.sets)
            return entry.chains
        if entry is not None and entry.exact[2] != self._objects_key:
            entry = None  # another document's objects: nothing can be reused
        infos: dict[str, RuleInfo] = {}
        memo: dict[str, tuple] = {}
        used: set[str] = set()
        blocks: dict = {}
        chains = self._build(rs, infos, memo, entry, used, blocks)
        self.infos.update(infos)
        # every set its rules use, also those another rule set of this compile made first
        used_sets = {name: sets[name] for name in sorted(used)}
        size = (
            1
            + sum(len(c.rules) for fam in chains.values() for c in fam.values())
            + sum(len(s.nets) for s in used_sets.values())
        )
        RULESET_CACHE.put(key, Built(exact, chains, infos, used_sets, memo, blocks), size)
        return chains

    def _build(
        self,
        rs: RuleSet,
        infos: dict[str, RuleInfo],
        memo: dict[str, tuple],
        earlier: Built | None = None,
        used: set[str] | None = None,
        blocks: dict | None = None,
    ) -> dict[int, dict[str, Chain]]:
        """The rule set's chains per family; where each rule came from goes to `infos`, the
        names of the sets its rules use to `used`.

        `memo` receives, per rule with an id, (rule, its kernel rules per family, the sets
        they use); `earlier` (the last build of a rule set of this name, same objects) lends
        its kernel rules to the rules that are unchanged, and its chains to the segments
        whose rules are all the same (their rendered text comes with them).
        """
        used = set() if used is None else used
        out: dict[int, dict[str, Chain]] = {4: _Chains(), 6: _Chains()}
        names = {c: ruleset_chain(rs.name, c) for c in CHAIN_LETTER}
        # hot loop (once per rule): names bound locally
        now, general = self.now, self._general
        simple_net, port_list, tag_of = (
            self.resolver.simple_net,
            self._port_list,
            rule_tagger(self._zones),
        )
        upper_states: dict[tuple[str, ...], tuple[str, ...]] = {}
        fallback = fallback_ids(rs.name, "rules")
        rs_name = rs.name
        known = earlier.memo.get if earlier is not None else None
        earlier_sets = earlier.sets if earlier is not None else {}
        sets = self.expander.sets
        for index, rule in enumerate(rs.rules):
            # one unpacking instead of a lookup per field (document.Rule is a NamedTuple)
            (
                chain_name,
                action,
                rid,
                sources,
                destinations,
                services,
                proto,
                dports_text,
                sports_text,
                sources_negate,
                destinations_negate,
                in_iface,
                out_iface,
                rule_states,
                log,
                _,
                rate_limit,
                burst,
                comment,
                enabled,
                expires_at,
                _,
                reject_with,
                in_zone,
                out_zone,
                per_source,
            ) = rule
            if not enabled or (expires_at is not None and expires_at <= now):
                continue
            rule_id = rid or fallback(index)
            until = None if expires_at is None else kernel_until(expires_at)
            infos[rule_id] = _new_tuple(RuleInfo, (rs_name, index + 1, comment, "filter"))
            name = names[chain_name]
            if known is not None and rid is not None:
                found = known(rid)
                if found is not None and found[0] == rule:  # unchanged: its kernel rules
                    for family, irs in found[1]:
                        out[family][name].rules.extend(irs)
                    for set_name in found[2]:
                        sets[set_name] = earlier_sets[set_name]
                    used.update(found[2])
                    memo[rid] = found
                    continue
            states = None
            if rule_states:
                states = upper_states.get(rule_states)
                if states is None:
                    states = upper_states[rule_states] = tuple(s.upper() for s in rule_states)
            tag = tag_of(rule_id, rule)
            target = TARGET[action]
            # The frequent shape (see Resolver._simple): literal tcp/udp, one literal
            # host/CIDR per side, no log, at most 7 port ranges a side → one kernel rule,
            # built here without the FamilyMatch/ProtoSpec detour; same IR as expand().
            if (
                (proto == "tcp" or proto == "udp")
                and not services
                and not log
                and in_zone is None
                and out_zone is None
                and per_source is None
                and len(sources) == 1
                and len(destinations) <= 1
            ):
                src = simple_net(sources[0])
                dst = simple_net(destinations[0]) if destinations else None
                if src is not None and (
                    not destinations or (dst is not None and dst[0].version == src[0].version)
                ):
                    dports = port_list(dports_text)
                    sports = port_list(sports_text) if sports_text else None
                    if (dports is None or len(dports) <= 7) and (
                        sports is None or len(sports) <= 7
                    ):
                        family = src[0].version
                        ir = IRRule(
                            target,
                            tag,
                            _new_tuple(AddrMatch, (src, sources_negate, None)),
                            None
                            if dst is None
                            else _new_tuple(AddrMatch, (dst, destinations_negate, None)),
                            in_iface,
                            out_iface,
                            proto,
                            sports,
                            dports,
                            None,
                            states,
                            rate_limit,
                            burst,
                            reject_with,  # REJECT's type (None: the default)
                            rule_id,
                            until,
                            # one bucket per policy rule (shared_limit.py)
                            shared_limit=limit_bucket(rule_id, rate_limit, burst)
                            if rate_limit
                            else None,
                        )
                        out[family][name].rules.append(ir)
                        if rid is not None:
                            memo[rid] = (rule, ((family, (ir,)),), ())
                        continue
            made, sets_of_rule = general(rule, rule_id, states, target, tag, until)
            for family, irs in made:
                out[family][name].rules.extend(irs)
            used.update(sets_of_rule)
            if rid is not None:
                memo[rid] = (rule, made, sets_of_rule)
        direction = {name: chain for chain, name in names.items()}
        self._set_compiled(
            out, rs_name, direction, earlier.blocks if earlier is not None else {}, blocks, used
        )
        return self._segmented(out, rs_name, direction, earlier)

    def _set_compiled(
        self,
        out: dict[int, dict[str, Chain]],
        rs_name: str,
        direction: dict[str, str],
        earlier: dict,
        made: dict | None,
        used: set[str],
    ) -> None:
        """Each chain's rules as levels of set lookups (blocks.py), in place, if the
        options ask for it; what each chain's pass leaves for the next goes to `made`, and
        `earlier` is what the last build of this rule set left. Guarded chains join
        `out` (and `direction`), their guards' address sets the compile's sets (`used`)."""
        opts = self.options
        if not opts.set_compile:
            return
        blocks = BlockCompiler(
            rs_name,
            opts.set_types,
            opts.set_min_rules,
            opts.set_range_max,
            opts.set_guard_min,
            opts.set_elements_max,
        )
        sets = self.expander.sets
        for family, chains in out.items():
            for name, chain in list(chains.items()):
                chain.rules, left = blocks.compile(
                    chain.rules, family, direction[name], earlier.get((family, name)), name
                )
                for guards in left[2]:
                    for guarded, guard in guards:
                        chains[guarded.name] = guarded
                        direction[guarded.name] = direction[name]
                        if guard is not None:
                            sets.setdefault(guard.name, guard)
                            used.add(guard.name)
                if made is not None:
                    made[(family, name)] = left

    def _general(
        self,
        rule: Rule,
        rule_id: str,
        states: tuple[str, ...] | None,
        target: str,
        tag: str,
        until: datetime | None = None,
    ) -> tuple[tuple[tuple[int, tuple[IRRule, ...]], ...], tuple[str, ...]]:
        """Any rule, through the resolver and `Expander.expand`: (family, kernel rules)
        per family, and the names of the sets they use; each carries the rule's `until`."""
        pairs = interface_pairs(
            self._zones, rule.in_interface, rule.out_interface, rule.in_zone, rule.out_zone
        )
        prefix = None
        if rule.log:
            prefix = rule.log_prefix if rule.log_prefix is not None else f"rpt:{rule_id[:8]} "
        expand = self.expander.expand
        made = []
        for fm in self.resolver.rule(rule):
            irs = [
                ir
                for in_if, out_if in pairs
                for ir in expand(
                    fm,
                    (in_if, out_if, states, rule.rate_limit, rule.burst),
                    target,
                    tag,
                    rule_id,
                    rule.reject_with,
                    prefix,
                )
            ]
            if until is not None:
                for ir in irs:  # just made here: not yet shared with anything
                    ir.until = until
            if rule.rate_limit:  # one bucket for all its kernel rules, the LOG twin's apart
                shared = {
                    b: limit_bucket(rule_id, rule.rate_limit, rule.burst, b) for b in (False, True)
                }
                for ir in irs:
                    ir.shared_limit = shared[ir.target == LOG]
            if rule.rate_limit_per_source is not None:
                limit = rule.rate_limit_per_source
                buckets = {b: bucket_name(rule_id, limit, b) for b in (False, True)}
                for ir in irs:  # likewise; the LOG twin has its own buckets
                    ir.per_source = (limit, buckets[ir.target == LOG])
            made.append((fm.family, tuple(irs)))
        sets_of_rule = tuple(
            sorted(
                {
                    m.set_name
                    for _, irs in made
                    for ir in irs
                    for m in (ir.src, ir.dst)
                    if m is not None and m.set_name is not None
                }
            )
        )
        return tuple(made), sets_of_rule

    @staticmethod
    def _segmented(
        out: dict[int, dict[str, Chain]],
        rs_name: str,
        direction: dict[str, str],
        earlier: Built | None,
    ) -> dict[int, dict[str, Chain]]:
        """Long chains cut into segments; a segment equal to the earlier build's is that
        very chain (its rendered text comes with it). `direction`: chain name -> input,
        forward or output."""
        for family, chains in out.items():
            before = earlier.chains[family] if earlier is not None else {}
            parts = {}
            for name, chain in chains.items():
                for part in S.segments(chain, rs_name, direction[name]):
                    same = before.get(part.name)
                    parts[part.name] = (
                        same if same is not None and same.rules == part.rules else part
                    )
            out[family] = parts
        return out

    def _port_list(self, texts: tuple[str, ...]) -> PortRanges | None:
        """`Resolver.port_list`: a single port straight from the document's parsed ports,
        longer lists cached per spelling (many rules name the same ports)."""
        if len(texts) == 1:
            found = self._doc_ports.get(texts[0])
            if found is not None:
                return (found,)
        found = self._ports.get(texts, _UNSET)
        if found is _UNSET:
            found = self._ports[texts] = self.resolver.port_list(texts)
        return found
