"""`check_document`: everything CI wants to know about a policy document, changing nothing.

Used by `POST /api/v1/validate/` and `manage.py rampart_check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .analysis import Finding, analyse_document, analyse_ruleset
from .assertions import AssertionResult, document_assertions
from .document import PolicyDocument
from .errors import CompilerError, FieldError
from .lower import CompileOptions, lower_device


@dataclass
class Report:
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    assertions: list[AssertionResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error and no failed assertion (warnings do not fail a check)."""
        return not self.errors and all(a.passed for a in self.assertions)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "errors": [e.to_dict() for e in self.errors],
            "warnings": [w.to_dict() for w in self.warnings],
            "assertions": [a.to_dict() for a in self.assertions],
        }

    def lines(self) -> list[str]:
        """Human-readable, one finding a line (for the command line)."""
        out = [f"error: {e}" for e in self.errors]
        out += [f"{w.severity}: {w.message}" for w in self.warnings]
        out += [("ok: " if a.passed else "FAILED: ") + a.message() for a in self.assertions]
        return out


def check_document(
    data: object,
    *,
    now: datetime,
    options: CompileOptions | None = None,
    ruleset: str | None = None,
) -> Report:
    """Validate, compile every device, analyse, and run every assertion.

    With `ruleset`, the analysis is that rule set's only (the document around it is context).
    """
    try:
        doc = PolicyDocument.from_dict(data)
    except CompilerError as exc:
        return Report(errors=exc.errors)
    return check_parsed(doc, now=now, options=options, ruleset=ruleset)


def check_parsed(
    doc: PolicyDocument,
    *,
    now: datetime,
    options: CompileOptions | None = None,
    ruleset: str | None = None,
) -> Report:
    report = Report()
    options = options or CompileOptions()
    for device in doc.devices:
        try:
            lower_device(doc, device.name, options, now)
        except CompilerError as exc:
            report.errors.extend(exc.errors)
    if report.errors:
        return report
    report.warnings = (
        analyse_ruleset(doc, ruleset, now=now) if ruleset else analyse_document(doc, now=now)
    )
    report.assertions = document_assertions(doc, now=now, options=options)
    return report
