"""The state of one import run, shared by its steps: the document, the plan being filled,
the errors collected so far, and the write every named row goes through."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Model

from compiler import FieldError, PolicyDocument
from rules.importer.plan import ImportFailed, Plan, errors_of
from rules.services import object_save


class ImportRun:
    """One import run: writes through rules.services and records every change in the plan."""

    def __init__(self, doc: PolicyDocument, plan: Plan):
        self.doc = doc
        self.plan = plan
        self.errors: list[FieldError] = []
        self.canonical = doc.to_dict()
        self.used_uuids: set[str] = set()
        self.used_nat_ids: set[str] = set()
        self.confirm_prune: int | None = None

    def check(self) -> None:
        """Stop at the end of a step when any entry of it was invalid."""
        if self.errors:
            raise ImportFailed(self.errors)

    def save(self, obj, path: str, kind: str, created: bool) -> None:
        try:
            object_save(obj)
        except ValidationError as exc:
            self.errors += errors_of(exc, path)
            return
        (self.plan.created if created else self.plan.updated)[kind].append(obj.name)

    def upsert(
        self, model: type[Model], kind: str, entries: Iterable, fields: Callable[[Any], dict]
    ) -> dict:
        """Create or update named rows (scalar fields only); returns name → row."""
        rows = {o.name: o for o in model.objects.all()}
        for entry in entries:
            want = fields(entry)
            row = rows.get(entry.name)
            path = f"{kind}[{entry.name}]"
            if row is None:
                row = rows[entry.name] = model(name=entry.name, **want)
                self.save(row, path, kind, created=True)
            elif any(getattr(row, k) != v for k, v in want.items()):
                for k, v in want.items():
                    setattr(row, k, v)
                self.save(row, path, kind, created=False)
        self.check()
        return rows
