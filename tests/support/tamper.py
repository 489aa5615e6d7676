"""Tampering with the audit log the way an attacker with database access would.

On PostgreSQL a trigger refuses UPDATE and DELETE of audit entries; an attacker who owns the
database can switch it off, so tamper tests do the same (inside the test's transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection

TRIGGER = "audit_auditentry_append_only"


def tamper(sql: str, params: Sequence[Any] = ()) -> None:
    """Run `sql` against the audit table with the append-only trigger off (PostgreSQL)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE audit_auditentry DISABLE TRIGGER {TRIGGER}")
        try:
            cursor.execute(sql, list(params))
        finally:
            if connection.vendor == "postgresql":
                cursor.execute(f"ALTER TABLE audit_auditentry ENABLE TRIGGER {TRIGGER}")
