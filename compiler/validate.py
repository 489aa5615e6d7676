"""Validation of single objects with the compiler's own parser and wording.

The console's models, forms, API and importer check one rule (or NAT rule, assertion) at
a time, before a whole document exists. These functions run the very parser of
`PolicyDocument.from_dict` on that one object and give its problems keyed by the field
names of POLICY-FORMAT.md, so every entry point accepts and words exactly the same things.

References are not resolved here unless the caller passes `families` (name → the IP
versions of the address or group, None when no such name exists): without it a
syntactically valid name is accepted wherever a name may stand (its object may not exist
yet); an address literal is always parsed and checked (its family too). Absent and None
mean "not set"; the caller drops empty form values.
"""

from __future__ import annotations

from collections.abc import Callable

from . import values as V
from .document.model import FAMILIES_ALL
from .document.parse_base import MISSING
from .document.parser import Parser
from .errors import FieldError

FamilyLookup = Callable[[str], "frozenset[int] | None"]

NON_FIELD = "__all__"  # problems of the object as a whole (Django's NON_FIELD_ERRORS)
_ROOT = "rule"


class _NameParser(Parser):
    """The document parser, with every well-formed name taken as defined (or looked up in
    `families`, when given)."""

    def __init__(self, families: FamilyLookup | None = None) -> None:
        super().__init__()
        self.families = families

    def address_refs(
        self, refs: tuple[str, ...], path: str, key: str, rule_id: str | None
    ) -> frozenset[int] | None:
        """Families of the literals among `refs`; None (any) as soon as a name is among
        them, since a name's family is not known here."""
        if not refs:
            return None
        fams: set[int] = set()
        named = False
        for i, ref in enumerate(refs):
            try:
                fams.add(self.lit(ref)[0].version)
            except ValueError:
                known = self.families(ref) if self.families and _is_name(ref) else None
                if known is not None:
                    fams |= known
                    continue
                if self.families or not _is_name(ref):
                    self.unknown_address(f"{path}.{key}[{i}]", ref, rule_id)
                    return MISSING
                named = True
        return None if named else frozenset(fams)

    def zone_known(self, name: str) -> bool:
        """Any well-formed zone name (zones are not known here)."""
        return _is_name(name)

    def service_refs(self, refs: tuple[str, ...], path: str, rule_id: str | None) -> frozenset[int]:
        for i, ref in enumerate(refs):
            self.call(V.validate_name, ref, f"{path}.services[{i}]", rule_id)
        return FAMILIES_ALL


def _is_name(text: str) -> bool:
    try:
        V.validate_name(text)
    except ValueError:
        return False
    return True


def _by_field(errors: list[FieldError]) -> dict[str, list[str]]:
    """`rule.dports[1]` → "dports"; `rule` itself → NON_FIELD."""
    out: dict[str, list[str]] = {}
    for error in errors:
        rest = error.path[len(_ROOT) :].lstrip(".")
        key = rest.split("[", 1)[0].split(".", 1)[0] or NON_FIELD
        out.setdefault(key, []).append(error.message)
    return out


def _errors(
    parse: Callable[[_NameParser], object], families: FamilyLookup | None = None
) -> dict[str, list[str]]:
    parser = _NameParser(families)
    parse(parser)
    return _by_field(parser.errors)


def rule_errors(rule: dict, *, chain: str | None = None) -> dict[str, list[str]]:
    """Problems of one filter rule, by field (`{}` when it is valid).

    `chain`: the chain the rule is in, when the caller holds it apart from the rule's
    other fields (it replaces `rule["chain"]`).
    """
    item = rule if chain is None else {**rule, "chain": chain}
    return _errors(lambda p: p.rule(item, _ROOT))


def nat_errors(nat: dict, *, families: FamilyLookup | None = None) -> dict[str, list[str]]:
    """Problems of one NAT rule, by field (`{}` when it is valid). With `families`, named
    sources and destinations must exist, and their families must agree with the literals'
    and the target's (a v4 `to` for v6 sources is refused, as the compiler would)."""
    return _errors(lambda p: p.nat(nat, _ROOT), families)


def probe_errors(probes: object, *, field: str = "probes") -> dict[str, list[str]]:
    """Problems of a list of health probes, keyed by the exact field (`probes[1].port`,
    `probes` for the list itself); `{}` when they are valid."""
    parser = _NameParser()
    parser.probes({"probes": probes}, "")
    out: dict[str, list[str]] = {}
    for error in parser.errors:
        key = field + error.path[len("probes") :]
        out.setdefault(key, []).append(error.message)
    return out


def assertion_errors(assertion: dict) -> dict[str, list[str]]:
    """Problems of one assertion, by field (`{}` when it is valid)."""
    return _errors(lambda p: p.assertion(assertion, _ROOT))


__all__ = [
    "NON_FIELD",
    "FamilyLookup",
    "assertion_errors",
    "nat_errors",
    "probe_errors",
    "rule_errors",
]
