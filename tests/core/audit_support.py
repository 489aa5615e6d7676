"""Helpers shared by the audit log's tests."""

from __future__ import annotations

from core.audit.models import AuditEntry
from core.audit.services import record


def entries(**filters) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(**filters).order_by("seq"))


def some_entries(n: int = 5) -> list[AuditEntry]:
    """`n` explicit events, oldest first."""
    for i in range(n):
        record(
            "drift_detected", object_type="rules.device", object_id=i, name=f"d{i}", after={"i": i}
        )
    return entries()
