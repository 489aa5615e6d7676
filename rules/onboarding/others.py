"""What the translator does with other software's rules and the tables besides filter:
Docker's and kube-proxy's left to their owner, the nat table's imported where the
document can hold it, FORWARD's policy left to the kernel where others decide after
Rampart (pure: no Django)."""

from __future__ import annotations

from collections.abc import Callable

from .dumps import Dump, ParsedRule
from .foreign import chain_owner, rule_interface_owner
from .nat import nat_entry


class OthersMixin:
    """Part of the translator (translate._Translator), split off to keep it readable."""

    dump: Dump
    family: int
    translated: dict[int, list[int]]
    left_to_others: set[str]
    nat: list[dict]
    nat_translated: dict[int, int]

    # the translator's own (declared for the type checker)
    skip: Callable[[ParsedRule, str], None]
    note: Callable[..., None]
    foreign_rule: Callable[[ParsedRule, str, str, str], None]

    def other_table(self, rule: ParsedRule) -> None:
        """A rule of another table: other software's left alone, the nat table's imported
        as NAT entries where the document can hold them, the rest reported."""
        owner = chain_owner(rule.chain)
        if owner:
            self.foreign_rule(
                rule,
                rule.chain,
                owner,
                f"chain {rule.chain} ({rule.table} table) belongs to {owner}: not imported",
            )
            return
        owner = chain_owner(rule.target or "") or rule_interface_owner(rule.text)
        if owner:
            self.foreign_rule(
                rule,
                f"{rule.chain} ({rule.table} table, rules of {owner})",
                owner,
                f"{owner}'s rule in the {rule.table} table: not imported",
            )
            return
        if rule.table != "nat":
            self.skip(rule, f"table {rule.table}: only the filter and nat tables are imported")
            return
        entry = nat_entry(rule, self.family)
        if isinstance(entry, str):
            self.skip(rule, f"nat table: {entry}")
        else:
            self.nat_translated[rule.line] = len(self.nat)
            self.nat.append(entry)

    def foreign_owners(self, builtin: str) -> list[str]:
        """Who else decides in `builtin`: owners of the chains it jumps to, or of the
        interfaces its rules name (Docker's `-o docker0 -j ACCEPT`)."""
        owners = []
        for rule in self.dump.chains.get(builtin, []):
            owner = chain_owner(rule.target or "") or rule_interface_owner(rule.text)
            if owner and owner not in owners:
                owners.append(owner)
        return owners

    def mark_policy(self, line: int, builtin: str, policy: str, owners: list[str]) -> None:
        """The built-in chain's policy, left to the kernel on a host where other software's
        chains decide after Rampart's rules."""
        self.translated.setdefault(line, [])
        self.left_to_others.add(builtin)
        self.note(
            line,
            f":{builtin} {policy}",
            f"the policy of {builtin} ({policy}) is not imported as a catch-all rule: "
            f"{', '.join(owners)} decide(s) in {builtin} after Rampart's rules. Give the "
            f"device default_policy {builtin.lower()}: accept with forward_fallthrough (the "
            f"kernel's {builtin} policy, {policy}, stays and applies after their chains)",
        )
