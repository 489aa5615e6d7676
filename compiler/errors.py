"""Errors of the policy compiler, as types.

Every error names where it is: a path into the policy document such as
`rulesets[web-baseline].rules[3].dports[0]`, and for rules their UUID, so a CI log or the
UI can point at the exact field. A `FieldError` subclass says what kind of problem it is
(`UnknownName`, `FamilyMismatch`), so a caller can tell them apart without reading prose;
the exceptions (`DocumentError`, `CompileError`, `PacketError`) carry a list of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of the document."""

    path: str
    message: str
    rule_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.path} (rule {self.rule_id})" if self.rule_id else self.path
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        data = {"path": self.path, "message": self.message}
        if self.rule_id:
            data["rule_id"] = self.rule_id
        return data


@dataclass(frozen=True)
class UnknownName(FieldError):
    """A reference to an object that is not defined (`kind` is e.g. "service", "device")."""

    kind: str = ""
    name: str = ""

    @classmethod
    def of(
        cls, path: str, kind: str, name: str, rule_id: str | None = None, detail: str = ""
    ) -> UnknownName:
        """The standard wording: `unknown <kind> '<name>'[: <detail>]`."""
        message = f"unknown {kind} {name!r}" + (f": {detail}" if detail else "")
        return cls(path, message, rule_id, kind, name)


@dataclass(frozen=True)
class FamilyMismatch(FieldError):
    """IPv4 and IPv6 mixed where one packet can only be of one family."""


class CompilerError(Exception):
    """Base class: a policy that cannot be compiled, with its field errors."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__(
            "; ".join(str(e) for e in self.errors[:5])
            + (f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else "")
        )

    def of_type(self, kind: type[FieldError]) -> list[FieldError]:
        """The field errors of one kind, e.g. `exc.of_type(UnknownName)`."""
        return [e for e in self.errors if isinstance(e, kind)]


class DocumentError(CompilerError):
    """The policy document is invalid (schema, names, references, families, ports…)."""


class CompileError(CompilerError):
    """The document is valid but cannot be compiled for a device (unknown device, …)."""


class PacketError(CompilerError, ValueError):
    """The tracer's packet is invalid; a `ValueError` too, for callers that catch that."""
