"""Errors of the policy compiler.

Every error names where it is: a path into the policy document such as
`rulesets[web-baseline].rules[3].dports[0]`, and for rules their UUID, so a CI log or the
UI can point at the exact field.
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


class CompilerError(Exception):
    """Base class: a policy that cannot be compiled, with its field errors."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__(
            "; ".join(str(e) for e in self.errors[:5])
            + (f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else "")
        )


class DocumentError(CompilerError):
    """The policy document is invalid (schema, names, references, families, ports…)."""


class CompileError(CompilerError):
    """The document is valid but cannot be compiled for a device (unknown device, …)."""
