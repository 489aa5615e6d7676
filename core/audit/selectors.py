"""Reads of the audit log for the API, the UI's audit page and exports."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from .checkpoints import last_checkpoint
from .filtersets import AuditEntryFilterSet
from .models import AuditEntry, AuditVerification
from .services import object_id_of, object_type_of

EXPORT_FIELDS = (
    "seq",
    "time",
    "actor",
    "user_id",
    "token",
    "channel",
    "action",
    "object_type",
    "object_id",
    "object_name",
    "changed",
    "before",
    "after",
    "reason",
    "ticket",
    "request_id",
    "client_ip",
    "user_agent",
    "extra",
    "prev_hash",
    "hash",
)
EXPORT_CHUNK = 2000


def audit_entries(filters: Mapping[str, Any] | None = None) -> QuerySet[AuditEntry]:
    """Entries newest first, narrowed by `AuditEntryFilterSet` parameters (a QueryDict works).
    Invalid filter values raise django.core.exceptions.ValidationError."""
    qs = AuditEntry.objects.order_by("-seq")
    if not filters:
        return qs
    fs = AuditEntryFilterSet(data=filters, queryset=qs)
    if not fs.is_valid():
        raise ValidationError(
            {k: [e["message"] for e in v] for k, v in fs.errors.get_json_data().items()}
        )
    return fs.qs


def object_history(obj: models.Model) -> QuerySet[AuditEntry]:
    """Every entry about one object, newest first (per-object history)."""
    return AuditEntry.objects.filter(
        object_type=object_type_of(obj), object_id=object_id_of(obj)
    ).order_by("-seq")


JSON_FIELDS = frozenset({"changed", "before", "after", "extra"})


def _rows(queryset: QuerySet) -> Iterator[tuple]:
    """Export rows with JSON columns as the database's JSON text: nothing is parsed and
    re-encoded, which is most of the cost of exporting a million entries."""
    columns = {f: Cast(f, TextField()) for f in JSON_FIELDS}
    names = [f"_{f}" if f in JSON_FIELDS else f for f in EXPORT_FIELDS]
    qs = queryset.annotate(**{f"_{f}": expr for f, expr in columns.items()}).values_list(*names)
    for row in qs.iterator(chunk_size=EXPORT_CHUNK):
        yield tuple(
            row[i].isoformat()
            if name == "time"
            else (row[i] if row[i] is not None else "null")
            if name in JSON_FIELDS
            else row[i]
            for i, name in enumerate(EXPORT_FIELDS)
        )


class _Echo:
    def write(self, value: str) -> str:
        return value


def export_csv(queryset: QuerySet) -> Iterator[str]:
    """CSV lines, one per entry, JSON columns as JSON text; constant memory."""
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_FIELDS)
    buffer: list[str] = []
    for row in _rows(queryset):
        buffer.append(writer.writerow(row))
        if len(buffer) >= 500:
            yield "".join(buffer)
            buffer.clear()
    if buffer:
        yield "".join(buffer)


def export_jsonl(queryset: QuerySet) -> Iterator[str]:
    """JSON lines, one object per entry; constant memory."""
    buffer: list[str] = []
    order = sorted(range(len(EXPORT_FIELDS)), key=lambda i: EXPORT_FIELDS[i])
    keys = [(json.dumps(EXPORT_FIELDS[i]), EXPORT_FIELDS[i] in JSON_FIELDS, i) for i in order]
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for row in _rows(queryset):
        parts = [f"{key}:{row[i] if is_json else dumps(row[i])}" for key, is_json, i in keys]
        buffer.append("{" + ",".join(parts) + "}\n")
        if len(buffer) >= 500:
            yield "".join(buffer)
            buffer.clear()
    if buffer:
        yield "".join(buffer)


def audit_status() -> dict[str, Any]:
    """The last check of the chain and the last checkpoint, for the overview and /metrics.

    `state` is "never" (not checked yet), "ok" or "broken"; ages are in seconds (None
    when there is nothing to be old). Reads one row and the newest checkpoint file.
    """
    last = AuditVerification.objects.order_by("-time").first()
    checkpoint, _ = last_checkpoint()
    now = timezone.now()
    return {
        "state": "never" if last is None else ("ok" if last.ok else "broken"),
        "verified_at": last.time if last else None,
        "verified_age": (now - last.time).total_seconds() if last else None,
        "ok": last.ok if last else None,
        "checked": last.checked if last else None,
        "break_count": last.break_count if last else None,
        "checkpoint_seq": checkpoint.seq if checkpoint else None,
        "checkpoint_time": checkpoint.time if checkpoint else None,
        "checkpoint_age": (now - checkpoint.time).total_seconds() if checkpoint else None,
    }
