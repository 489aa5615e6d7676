"""The `Program` of one device: per family, `RPT-INPUT`/`RPT-FORWARD`/`RPT-OUTPUT` hold
the fixed steps, then one jump per rule set of the device (in order) into that rule set's
own chain, then the device's default policy; and the nat table (management traffic first
exempt from it)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..document import Device, PolicyDocument, RuleSet
from ..errors import CompileError, UnknownName
from ..ir import JUMP, Chain, IpSet, LookupSet, Program, RuleInfo, Table
from ..ir import Rule as IRRule
from ..resolve import Resolver
from .expand import TARGET, Expander
from .names import ruleset_chain
from .nat import nat_table
from .options import CompileOptions
from .rulesets import RulesetLowerer
from .static import fixed_rules, nat_exemption


class Lowerer:
    """Builds a `Program` for one device; rule-set chains are built once per family."""

    def __init__(
        self,
        doc: PolicyDocument,
        options: CompileOptions,
        now: datetime,
        resolver: Resolver | None = None,
    ):
        self.doc = doc
        self.options = options
        self.now = now
        self.resolver = resolver or Resolver(doc)
        self.expander = Expander(options)
        self.rulesets = RulesetLowerer(doc, now, self.resolver, self.expander)
        self.rules: dict[str, RuleInfo] = self.rulesets.infos

    @property
    def sets(self) -> dict[str, IpSet]:
        """Every ipset the rules lowered so far use."""
        return self.expander.sets

    def device(self, device: Device) -> Program:
        rulesets = self.doc.device_rulesets(device)
        tables: dict[tuple[int, str], Table] = {}
        for family in (4, 6):
            tables[(family, "filter")] = self.filter_table(device, rulesets, family)
            exempt = nat_exemption(device, family, self.resolver, self.expander)
            tables[(family, "nat")] = nat_table(
                rulesets,
                family,
                self.resolver,
                self.expander,
                self.rules,
                exempt,
                self.doc.by_name["zones"],
            )
        # sorting the keys alone compares strings only (twice as fast as items)
        sets = {name: self.sets[name] for name in sorted(self.sets)}
        lookups: dict[str, LookupSet] = {}
        if self.options.set_compile:
            # an address set whose rule went into a block's set is no longer used
            lookups, used = _sets_used(tables.values())
            sets = {name: ipset for name, ipset in sets.items() if name in used}
        # (the index sorts them)
        zones = {z.name: z.interfaces for z in self.doc.zones}
        return Program(device.name, tables, sets, self.rules, self.now, zones, lookups)

    def filter_table(self, device: Device, rulesets: list[RuleSet], family: int) -> Table:
        table = Table(family, "filter")
        rs_chains = [self.rulesets.chains(rs, family) for rs in rulesets]
        for chain in ("input", "forward", "output"):
            main = Chain(f"RPT-{chain.upper()}")
            table.jumps[chain.upper()] = [IRRule(JUMP, "rpt:jump", arg=main.name)]
            table.chains[main.name] = main
            main.rules.extend(fixed_rules(device, chain, family, self.resolver, self.expander))
            for rs, chains in zip(rulesets, rs_chains, strict=True):
                name = ruleset_chain(rs.name, chain)
                if name in chains:
                    main.rules.append(IRRule(JUMP, "rpt:jump", arg=name))
            default = device.default_policy(chain)
            if not (
                chain == "forward" and default == "accept" and self.options.forward_fallthrough
            ):
                main.rules.append(IRRule(TARGET[default], "rpt:sys:default"))
        for chains in rs_chains:
            for name, chain_obj in chains.items():
                table.chains.setdefault(name, chain_obj)
        return table


def _sets_used(tables: Iterable[Table]) -> tuple[dict[str, LookupSet], set[str]]:
    """The sets of the set-lookup rules in `tables` by name (sorted), and the names of the
    address sets their other rules use."""
    found: dict[str, LookupSet] = {}
    used: set[str] = set()
    for table in tables:
        every = [c.rules for c in table.chains.values()] + list(table.jumps.values())
        for rules in every:
            for r in rules:
                if r.lookup is not None:
                    found[r.lookup.name] = r.lookup
                for m in (r.src, r.dst):
                    if m is not None and m.set_name is not None:
                        used.add(m.set_name)
    return {name: found[name] for name in sorted(found)}, used


def lower_device(
    doc: PolicyDocument, device_name: str, options: CompileOptions, now: datetime
) -> Program:
    """The `Program` of one device; `CompileError` (an `UnknownName`) if the device is
    unknown."""
    if device_name not in doc.by_name["devices"]:
        raise CompileError(
            [UnknownName(f"devices[{device_name}]", "unknown device", None, "device", device_name)]
        )
    return Lowerer(doc, options, now).device(doc.device(device_name))
