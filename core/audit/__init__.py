"""The audit log: who changed what, when, from where; hash-chained and append-only.

Public API (import from the submodules; the names below are re-exported lazily so that
importing this package never loads models before the app registry is ready):

- `record(action, obj=None, ...)` / `record_objects(action, objs, ...)` — services.py
- `audit_context(actor=..., channel=...)` — context.py
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("record", "record_objects"):
        from . import services

        return getattr(services, name)
    if name in ("audit_context", "current"):
        from . import context

        return getattr(context, name)
    raise AttributeError(name)
