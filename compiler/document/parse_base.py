"""The parser's state and its small helpers, shared by the parsers of each part.

Every helper records a problem as a `FieldError` (with its path and rule id) and carries
on, so one pass reports every problem of a document.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Set
from typing import Any, NamedTuple

from .. import nets as N
from .. import values as V
from ..errors import FamilyMismatch, FieldError, UnknownName
from .literals import protocol_families
from .model import FAMILIES_ALL

MISSING: Any = object()  # "no value": a call that failed (its error is recorded)


class RulePath(NamedTuple):
    """`rulesets[x].rules[3]`, spelled out only when a message needs it."""

    ruleset_path: str
    position: int

    def __str__(self) -> str:
        return f"{self.ruleset_path}.rules[{self.position}]"


class ParserBase:
    """What the parser has learnt so far, and helpers that record problems."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.addr_families: dict[str, frozenset[int]] = {}
        self.group_members: dict[str, tuple[str, ...]] = {}
        self.service_protocols: dict[str, frozenset[str]] = {}
        self.svcgroup_members: dict[str, tuple[str, ...]] = {}
        self.rule_ids: dict[str, str | RulePath] = {}
        self.group_fams: dict[str, frozenset[int]] = {}
        self.cycles: set[frozenset[str]] = set()
        self.literals: dict[str, tuple[N.Net, ...]] = {}
        self.ports: dict[str, tuple[int, int]] = {}
        self.zone_interfaces: dict[str, tuple[str, ...]] = {}

    def port(self, text: str) -> tuple[int, int]:
        found = self.ports.get(text)
        if found is None:
            found = self.ports[text] = V.parse_port(text)
        return found

    def lit(self, text: str) -> tuple[N.Net, ...]:
        """Parse (and remember) an address literal."""
        found = self.literals.get(text)
        if found is None:
            found = self.literals[text] = N.parse(text)
        return found

    def err(self, path: str, message: str, rule_id: str | None = None) -> None:
        self.errors.append(FieldError(path, message, rule_id))

    def unknown(
        self, path: str, kind: str, name: str, rule_id: str | None = None, detail: str = ""
    ) -> None:
        """A reference to an undefined object."""
        self.errors.append(UnknownName.of(path, kind, name, rule_id, detail))

    def mismatch(self, path: str, message: str, rule_id: str | None = None) -> None:
        """IPv4 and IPv6 mixed where no packet can match both."""
        self.errors.append(FamilyMismatch(path, message, rule_id))

    def mapping(
        self,
        data: object,
        path: str,
        allowed: Set[str],
        required: Iterable[str] = (),
        rule_id: str | None = None,
    ) -> dict | None:
        if not isinstance(data, dict):
            self.err(path or "document", "must be a mapping", rule_id)
            return None
        for key in sorted(set(map(str, data)) - allowed):
            self.err(f"{path}.{key}" if path else key, "unknown key", rule_id)
        for key in required:
            if data.get(key) is None:
                self.err(f"{path}.{key}" if path else key, "is required", rule_id)
        return data

    def items(self, data: dict, key: str, path: str) -> list:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.err(f"{path}.{key}" if path else key, "must be a list")
            return []
        return value

    def str_list(self, data: dict, key: str, path: str, rule_id: str | None = None) -> tuple:
        value = data.get(key)
        if value is None:
            return ()
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            self.err(f"{path}.{key}", "must be a list", rule_id)
            return ()
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                self.err(f"{path}.{key}[{i}]", "must be a string", rule_id)
            else:
                out.append(str(item).strip())
        return tuple(out)

    def text(
        self, data: dict, key: str, path: str, rule_id: str | None = None, limit: int = 1000
    ) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.err(f"{path}.{key}", "must be a string", rule_id)
            return ""
        if len(value) > limit:
            self.err(f"{path}.{key}", f"at most {limit} characters", rule_id)
        return value

    def boolean(
        self, data: dict, key: str, path: str, default: bool, rule_id: str | None = None
    ) -> bool:
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.err(f"{path}.{key}", "must be true or false", rule_id)
            return default
        return value

    def choice(
        self,
        data: dict,
        key: str,
        path: str,
        choices: tuple[str, ...],
        what: str,
        rule_id: str | None = None,
        default: str | None = None,
    ) -> str | None:
        value = data.get(key, default)
        if value is None:
            return None
        try:
            return V.parse_choice(value, choices, what)
        except ValueError as exc:
            self.err(f"{path}.{key}", str(exc), rule_id)
            return None

    def call(
        self, fn: Callable[[Any], Any], value: object, path: str, rule_id: str | None = None
    ) -> Any:
        """`fn(value)`, or `MISSING` with the `ValueError`/`TypeError` recorded at `path`."""
        try:
            return fn(value)
        except (ValueError, TypeError) as exc:
            self.err(path, str(exc), rule_id)
            return MISSING

    def named(self, entries: list, kind: str) -> list[tuple[str, dict, str]]:
        """(name, item, path) of well-formed entries, flagging bad and duplicate names."""
        seen: set[str] = set()
        out: list[tuple[str, dict, str]] = []
        for i, item in enumerate(entries):
            name = item.get("name") if isinstance(item, dict) else None
            path = f"{kind}[{name}]" if isinstance(name, str) and name else f"{kind}[{i}]"
            if not isinstance(item, dict):
                self.err(path, "must be a mapping")
                continue
            name = self.call(V.validate_name, name, f"{path}.name")
            if name is MISSING:
                continue
            if name in seen:
                self.err(path, f"duplicate name {name!r} among {kind}")
                continue
            seen.add(name)
            out.append((name, item, path))
        return out

    def address_refs(
        self, refs: tuple[str, ...], path: str, key: str, rule_id: str | None
    ) -> frozenset[int] | None:
        """Families of the referenced addresses (None when `refs` is empty = any)."""
        if not refs:
            return None
        fams: set[int] = set()
        for i, ref in enumerate(refs):
            if ref in self.addr_families:
                fams |= self.addr_families[ref]
                continue
            try:
                fams.add(self.lit(ref)[0].version)
            except ValueError:
                self.unknown_address(f"{path}.{key}[{i}]", ref, rule_id)
                return MISSING
        return frozenset(fams)

    def unknown_address(self, path: str, ref: str, rule_id: str | None) -> None:
        """`ref` is neither a defined address (group) nor a literal."""
        self.unknown(
            path, "reference", ref, rule_id, "not an address, address group or address literal"
        )

    def service_refs(self, refs: tuple[str, ...], path: str, rule_id: str | None) -> frozenset[int]:
        """Families the referenced services' protocols allow (all when none is known)."""
        fams: set[int] = set()
        for i, ref in enumerate(refs):
            protos = self.service_protocols.get(ref)
            if protos is None:
                self.unknown(f"{path}.services[{i}]", "service", ref, rule_id)
                continue
            for proto in protos:
                fams |= protocol_families(proto)
        return frozenset(fams) if fams else FAMILIES_ALL

    def interfaces(
        self,
        item: dict,
        path: str,
        chain: str | None,
        rule_id: str | None,
        allowed_in: tuple[str, ...],
        allowed_out: tuple[str, ...],
    ) -> tuple[str | None, str | None]:
        result: list[str | None] = []
        for key, allowed in (("in_interface", allowed_in), ("out_interface", allowed_out)):
            value = item.get(key)
            if value is None:
                result.append(None)
                continue
            if (
                self.call(
                    V.parse_interface,
                    value if isinstance(value, str) else "",
                    f"{path}.{key}",
                    rule_id,
                )
                is MISSING
            ):
                result.append(None)
                continue
            if chain and chain not in allowed:
                self.err(f"{path}.{key}", f"{key} cannot be matched in chain {chain}", rule_id)
            result.append(value)
        return result[0], result[1]

    def rule_id(self, item: dict, path: str) -> str | None:
        value = item.get("id")
        if value is None:
            return None
        try:
            rid = str(uuid.UUID(str(value)))
        except ValueError:
            self.err(f"{path}.id", f"invalid id {value!r}: must be a UUID")
            return None
        if rid in self.rule_ids:
            self.err(f"{path}.id", f"duplicate rule id (also {self.rule_ids[rid]})", rid)
        self.rule_ids[rid] = path
        return rid
