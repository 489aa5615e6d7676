"""Parsing a document's `scope`: what part of the policy the document speaks for.

A document without `scope` speaks for everything (version 1 as first published). A scoped
export (one rule set, one device) says which kinds and names it covers, so an import with
prune deletes only inside them: a kind the scope leaves out is never pruned.

    scope:
      rulesets: [web-baseline]   # these names only: prune may delete them, nothing else
      addresses: all             # the whole kind
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import values as V
from .parse_base import MISSING, ParserBase

SCOPE_KINDS = (
    "addresses",
    "address_groups",
    "services",
    "service_groups",
    "zones",
    "rulesets",
    "device_groups",
    "devices",
)
ALL = "all"


@dataclass(frozen=True)
class Scope:
    """The kinds a document covers: kind → names, or None for the whole kind."""

    kinds: tuple[tuple[str, tuple[str, ...] | None], ...] = ()

    def covers(self, kind: str) -> bool:
        return any(k == kind for k, _ in self.kinds)

    def names(self, kind: str) -> tuple[str, ...] | None:
        """The names of `kind` the document covers; None for all of them (or none of the
        kind when `covers(kind)` is false)."""
        return next((names for k, names in self.kinds if k == kind), None)

    def to_dict(self) -> dict[str, list[str] | str]:
        return {k: ALL if names is None else list(names) for k, names in self.kinds}


class ScopeParser(ParserBase):
    """The top-level `scope` mapping (names need not be in the document: a covered name
    the document leaves out is what prune deletes)."""

    def scope(self, data: object) -> Scope | None:
        if data is None:
            return None
        top = self.mapping(data, "scope", set(SCOPE_KINDS))
        if top is None:
            return None
        kinds: list[tuple[str, tuple[str, ...] | None]] = []
        for kind in SCOPE_KINDS:
            if kind not in top:
                continue
            value = top[kind]
            if value == ALL:
                kinds.append((kind, None))
                continue
            if not isinstance(value, list):
                self.err(f"scope.{kind}", f"must be a list of names or {ALL!r}")
                continue
            names = [
                self.call(V.validate_name, name, f"scope.{kind}[{i}]")
                for i, name in enumerate(value)
            ]
            kinds.append((kind, tuple(sorted({n for n in names if n is not MISSING}))))
        return Scope(tuple(kinds))
