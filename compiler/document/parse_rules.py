"""Parsing filter rules: `plain_rule`, a fast path for the shape most rules have, and
`rule`, the general parser that also words every problem."""

from __future__ import annotations

import re

from .. import nets as N
from .. import per_source as PS
from .. import values as V
from . import keys
from .literals import protocol_families
from .model import FAMILIES_ALL, Rule
from .parse_base import MISSING, RulePath
from .parse_zones import ZoneParser
from .times import parse_datetime

_RULE_KEYS = frozenset(keys.RULE)
_PLAIN_RULE_KEYS = frozenset(
    (
        "id",
        "chain",
        "action",
        "sources",
        "destinations",
        "protocol",
        "dports",
        "sports",
        "comment",
        "enabled",
        "sources_negate",
        "destinations_negate",
    )
)
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_CHAIN_SET = frozenset(V.CHAINS)
_ACTION_SET = frozenset(V.ACTIONS)
_PROTOCOL_SET = frozenset(V.PROTOCOLS)
_PORT_PROTOCOL_SET = frozenset(V.PORT_PROTOCOLS)
# what `_plain_refs` gives for an absent side (any address)
_ANY_REFS: tuple[None, tuple[str, ...]] = (None, ())
# NamedTuple instances without the Python-level __new__ (once per rule; as in lower/)
_new_tuple = tuple.__new__
_FAMILY_BITS = {frozenset(): 0, frozenset((4,)): 1, frozenset((6,)): 2, frozenset((4, 6)): 3}


class RuleParser(ZoneParser):
    """Filter rules, checked against the objects parsed before them."""

    def plain_rule(self, item: object, ruleset_path: str, index: int) -> Rule | None:
        """`rule()` for the plain shape most rules have, ~3x faster; None for any other
        rule, and for any rule with a problem, which `rule()` then parses and reports.

        Plain: only the keys in `_PLAIN_RULE_KEYS`, given in their canonical form (as the
        database and `to_dict()` write them): a lowercase UUID, exact choice values,
        lists of strings, booleans. It accepts exactly what `rule()` accepts and builds the
        same `Rule` (a property test compares the two on random rules, valid or not).
        """
        if type(item) is not dict or not item.keys() <= _PLAIN_RULE_KEYS:
            return None
        get = item.get
        rid = get("id")
        if rid is not None and (
            type(rid) is not str or _UUID_RE.match(rid) is None or rid in self.rule_ids
        ):
            return None
        chain, action, protocol = get("chain"), get("action"), get("protocol")
        if (
            type(chain) is not str
            or type(action) is not str
            or chain not in _CHAIN_SET
            or action not in _ACTION_SET
            or protocol is not None
            and (type(protocol) is not str or protocol not in _PROTOCOL_SET)
        ):
            return None
        # an absent side without the call (most rules name no destination, no sports)
        src, dst = get("sources"), get("destinations")
        src = _ANY_REFS if src is None else self._plain_refs(src)
        dst = _ANY_REFS if dst is None else self._plain_refs(dst)
        dports, sports = get("dports"), get("sports")
        dports = () if dports is None else self._plain_ports(dports)
        sports = () if sports is None else self._plain_ports(sports)
        if src is None or dst is None or dports is None or sports is None:
            return None
        if (dports or sports) and protocol not in _PORT_PROTOCOL_SET:
            return None
        src_f, dst_f = src[0], dst[0]
        if src_f is not None and dst_f is not None and not src_f & dst_f:
            return None
        addr_f = (3 if src_f is None else src_f) & (3 if dst_f is None else dst_f)
        if protocol == "icmp" and not addr_f & 1 or protocol == "icmpv6" and not addr_f & 2:
            return None
        comment = get("comment", "")
        s_neg = get("sources_negate", False)
        d_neg = get("destinations_negate", False)
        enabled = get("enabled", True)
        if (
            type(comment) is not str
            or len(comment) > 1000
            or type(s_neg) is not bool
            or type(d_neg) is not bool
            or type(enabled) is not bool
        ):
            return None
        if rid is not None:
            self.rule_ids[rid] = _new_tuple(RulePath, (ruleset_path, index))
        # every field, in Rule's order: tuple.__new__ skips NamedTuple's Python-level
        # __new__ (a third of building one) but checks nothing, so a field added to Rule
        # must be added here too (test_plain_rule_parser_equals_the_general_one fails
        # until it is); the fields a plain rule lacks at their defaults
        return _new_tuple(
            Rule,
            (
                chain,
                action,
                rid,
                src[1],
                dst[1],
                (),
                protocol,
                dports,
                sports,
                s_neg,
                d_neg,
                None,
                None,
                (),
                False,
                None,
                None,
                None,
                comment,
                enabled,
                None,
                None,
                None,
                None,
                None,
                None,
            ),
        )

    def _plain_refs(self, refs: object) -> tuple[int | None, tuple[str, ...]] | None:
        """(family bits, refs) of one side of a plain rule, bit 1 for IPv4 and bit 2 for
        IPv6 (None, () when absent: any); None if the side is not plain or a reference is
        unknown."""
        if refs is None:
            return None, ()
        if type(refs) is not list:
            return None
        fams = 0
        out = []
        named, literals = self.addr_families, self.literals  # `lit`, inline: once per ref
        for ref in refs:
            if type(ref) is not str:
                return None
            ref = ref.strip()
            known = named.get(ref)
            if known is not None:
                fams |= _FAMILY_BITS[known]
            else:
                nets = literals.get(ref)
                if nets is None:
                    try:
                        nets = literals[ref] = N.parse(ref)
                    except ValueError:
                        return None
                fams |= 1 if nets[0].version == 4 else 2
            out.append(ref)
        return (fams, tuple(out)) if out else (None, ())

    def _plain_ports(self, given: object) -> tuple[str, ...] | None:
        """The port spellings of a plain rule (each parsed once); None if not plain."""
        if given is None:
            return ()
        if type(given) is not list:
            return None
        out = []
        known = self.ports  # `port`, inline: once per port
        for text in given:
            if type(text) is not str:
                return None
            text = text.strip()
            if text not in known:
                try:
                    known[text] = V.parse_port(text)
                except (ValueError, TypeError):
                    return None
            out.append(text)
        return tuple(out)

    def rule(self, item: object, path: str) -> Rule | None:
        """The rule at `path`, or None with its problems recorded."""
        rid = self.rule_id(item, path) if isinstance(item, dict) else None
        if self.mapping(item, path, _RULE_KEYS, ("chain", "action"), rid) is None:
            return None
        assert isinstance(item, dict)
        n_errors = len(self.errors)
        chain = self.choice(item, "chain", path, V.CHAINS, "chain", rid)
        action = self.choice(item, "action", path, V.ACTIONS, "action", rid)
        sources = self.str_list(item, "sources", path, rid)
        destinations = self.str_list(item, "destinations", path, rid)
        src_f = self.address_refs(sources, path, "sources", rid)
        dst_f = self.address_refs(destinations, path, "destinations", rid)
        services = self.str_list(item, "services", path, rid)
        protocol = self.choice(item, "protocol", path, V.PROTOCOLS, "protocol", rid)
        dports = self.str_list(item, "dports", path, rid)
        sports = self.str_list(item, "sports", path, rid)
        for key, ports in (("dports", dports), ("sports", sports)):
            for i, p in enumerate(ports):
                self.call(self.port, p, f"{path}.{key}[{i}]", rid)
        icmp_type = self.rule_icmp_type(item, path, rid, protocol, bool(services))
        if services:
            if protocol is not None or dports or sports:
                self.err(
                    f"{path}.services",
                    "give either services or protocol/dports/sports, not both",
                    rid,
                )
            proto_f = self.service_refs(services, path, rid)
        else:
            if (dports or sports) and (protocol or "any") not in V.PORT_PROTOCOLS:
                self.err(
                    f"{path}.{'dports' if dports else 'sports'}",
                    f"ports need protocol tcp or udp, not {protocol or 'any'}",
                    rid,
                )
            proto_f = protocol_families(protocol)
        if src_f is not MISSING and dst_f is not MISSING:
            self.rule_families(path, rid, src_f, dst_f, proto_f, bool(services))
        in_ok, out_ok = ("input", "forward"), ("output", "forward")
        in_if, out_if = self.interfaces(item, path, chain, rid, in_ok, out_ok)
        in_zone, out_zone = self.zone_refs(item, path, chain, rid, (in_if, out_if), (in_ok, out_ok))
        states = self.str_list(item, "states", path, rid)
        for i, s in enumerate(states):
            self.call(
                lambda v: V.parse_choice(v, V.RULE_STATES, "state"), s, f"{path}.states[{i}]", rid
            )
        if "dnat" in states and len(set(states)) > 1:  # iptables ORs them; nft cannot
            self.err(f"{path}.states", "dnat combines with no other state: write two rules", rid)
        log_prefix, rate, burst = self.rule_logging(item, path, rid)
        expires = item.get("expires_at")
        expires_at = None
        if expires is not None:
            expires_at = self.call(parse_datetime, expires, f"{path}.expires_at", rid)
        log = self.boolean(item, "log", path, False, rid)
        s_neg = self.boolean(item, "sources_negate", path, False, rid)
        d_neg = self.boolean(item, "destinations_negate", path, False, rid)
        enabled = self.boolean(item, "enabled", path, True, rid)
        comment = self.text(item, "comment", path, rid)
        reject_with = self.rule_reject_with(item, path, rid, action, protocol, services)
        per_source = item.get("rate_limit_per_source")
        if per_source is not None:
            per_source = self.call(PS.parse, per_source, f"{path}.rate_limit_per_source", rid)
        if len(self.errors) != n_errors or chain is None or action is None:
            return None
        return Rule(
            chain,
            action,
            rid,
            sources,
            destinations,
            services,
            protocol,
            dports,
            sports,
            s_neg,
            d_neg,
            in_if,
            out_if,
            tuple(dict.fromkeys(states)),
            log,
            log_prefix,
            rate,
            burst,
            comment,
            enabled,
            expires_at,
            icmp_type,
            reject_with,
            in_zone,
            out_zone,
            per_source,
        )

    def rule_reject_with(
        self,
        item: dict,
        path: str,
        rid: str | None,
        action: str | None,
        protocol: str | None,
        services: tuple[str, ...],
    ) -> str | None:
        """The rule's `reject_with`: only on a reject; tcp-reset only for tcp (the kernel
        refuses a TCP reset for any other protocol)."""
        value = item.get("reject_with")
        if value is None:
            return None
        where = f"{path}.reject_with"
        if not isinstance(value, str) or value not in V.REJECT_WITH:
            self.err(
                where, f"unknown reject type {value!r}: one of {', '.join(V.REJECT_WITH)}", rid
            )
            return None
        if action != "reject":
            self.err(where, f"reject_with needs action reject, not {action}", rid)
        elif value == "tcp-reset":
            # services of unknown protocols (not defined, or not known to rule_errors)
            # are reported elsewhere or checked once the document is whole
            protos = {protocol or "any"}
            if services:
                known = [self.service_protocols.get(ref) for ref in services]
                protos = {p for k in known if k for p in k} if all(known) else {"tcp"}
            if protos != {"tcp"}:
                self.err(
                    where,
                    "tcp-reset needs protocol tcp (or services that are all tcp), not "
                    + ", ".join(sorted(protos)),
                    rid,
                )
        return value

    def rule_icmp_type(
        self, item: dict, path: str, rid: str | None, protocol: str | None, services: bool
    ) -> str | int | None:
        """The rule's `icmp_type` as given (checked against its protocol)."""
        icmp_type = item.get("icmp_type")
        if icmp_type is not None:
            if protocol not in ("icmp", "icmpv6") or services:
                self.err(f"{path}.icmp_type", "an ICMP type needs protocol icmp or icmpv6", rid)
            else:
                self.call(
                    lambda v: V.parse_icmp_type(protocol, v), icmp_type, f"{path}.icmp_type", rid
                )
        return icmp_type

    def rule_families(
        self,
        path: str,
        rid: str | None,
        src_f: frozenset[int] | None,
        dst_f: frozenset[int] | None,
        proto_f: frozenset[int],
        services: bool,
    ) -> None:
        """Record a `FamilyMismatch` if no packet can match the rule's addresses and
        protocol at once (None: the side is "any")."""
        if src_f and dst_f and not (src_f & dst_f):
            self.mismatch(
                f"{path}.destinations",
                f"sources are IPv{min(src_f)} only and destinations IPv{min(dst_f)} "
                "only: no packet can match",
                rid,
            )
            return
        addr_f = (src_f if src_f is not None else FAMILIES_ALL) & (
            dst_f if dst_f is not None else FAMILIES_ALL
        )
        if addr_f and not (addr_f & proto_f):
            self.mismatch(
                f"{path}.{'services' if services else 'protocol'}",
                f"the rule's addresses are IPv{min(addr_f)} only but its "
                f"protocol is for IPv{min(proto_f)} only",
                rid,
            )

    def rule_logging(
        self, item: dict, path: str, rid: str | None
    ) -> tuple[str | None, str | None, int | None]:
        """(log_prefix, rate_limit, burst) as the rule keeps them."""
        log_prefix = item.get("log_prefix")
        if log_prefix is not None:
            self.call(V.parse_log_prefix, str(log_prefix), f"{path}.log_prefix", rid)
        rate = item.get("rate_limit")
        parsed = (
            MISSING if rate is None else self.call(V.parse_rate, rate, f"{path}.rate_limit", rid)
        )
        burst = item.get("burst")
        burst_ok = burst is None
        if burst is not None:
            if (
                isinstance(burst, bool)
                or not isinstance(burst, int)
                or not 1 <= burst <= V.BURST_MAX
            ):
                self.err(f"{path}.burst", f"must be a whole number 1-{V.BURST_MAX}", rid)
            elif rate is None:
                self.err(f"{path}.burst", "burst needs rate_limit", rid)
            else:
                burst_ok = True
        if parsed is not MISSING and burst_ok:  # what the kernel's limit match would refuse
            where = f"{path}.{'rate_limit' if burst is None else 'burst'}"
            self.call(lambda r: V.check_limit_burst(r, burst), parsed, where, rid)
        return (
            None if log_prefix is None else str(log_prefix),
            None if rate is None else str(rate).strip(),
            burst,
        )
