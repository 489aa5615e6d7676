"""The reason and ticket every dashboard write carries into the audit log.

Every `ServiceForm` gets a `reason` and a `ticket` field (a form that already has a
`reason`, like a deployment's, keeps its own: it doubles as the audit reason), required
when `RAMPART_AUDIT_REQUIRE_REASON` / `RAMPART_AUDIT_REQUIRE_TICKET` say so, the same
settings the API obeys. The audit middleware reads the posted values into the audit
context, so they land in every entry the write makes; the form only validates them and
keeps the fields it added out of `cleaned_data` (services never see them).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

REASON_MAX = 500
TICKET_MAX = 100


def audit_requirements() -> dict[str, bool]:
    conf = settings.RAMPART
    return {
        "reason": bool(conf.get("AUDIT_REQUIRE_REASON")),
        "ticket": bool(conf.get("AUDIT_REQUIRE_TICKET")),
    }


class AuditFieldsMixin:
    """Adds the audit fields to a Django form; `audit=False` leaves them out (a form that
    validates without writing, e.g. the rule editor's check while typing)."""

    writes = True  # a read-only form (the tracer) sets False
    audit: dict[str, str]

    def __init__(self, *args: Any, audit: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audit = {"reason": "", "ticket": ""}
        self.audit_added: tuple[str, ...] = ()
        if not (audit and self.writes):
            return
        required = audit_requirements()
        fields = self.fields  # type: ignore[attr-defined]
        added = []
        if "reason" not in fields:
            fields["reason"] = forms.CharField(
                required=False,
                max_length=REASON_MAX,
                label="Reason for the change",
                help_text="recorded in the audit log",
            )
            added.append("reason")
        if "ticket" not in fields:
            fields["ticket"] = forms.CharField(
                required=False, max_length=TICKET_MAX, label="Ticket"
            )
            added.append("ticket")
        for name in ("reason", "ticket"):
            if required[name]:
                fields[name].required = True
                fields[name].error_messages["required"] = (
                    f"a {'reason' if name == 'reason' else 'ticket reference'} is required "
                    "for every change (recorded in the audit log)"
                )
        self.audit_added = tuple(added)

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        data = getattr(self, "cleaned_data", None)
        if data is None:
            return
        for name in ("reason", "ticket"):
            value = data.pop(name, "") if name in self.audit_added else data.get(name, "")
            self.audit[name] = (value or "").strip()


class AuditFieldsForm(AuditFieldsMixin, forms.Form):
    """Only the audit fields: for a write that posts nothing else (a delete button)."""
