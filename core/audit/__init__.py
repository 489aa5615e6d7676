"""The audit log: who changed what, when, from where; MAC-chained, anchored, append-only.

Public API (import from the submodules; `record`/`record_objects` are re-exported lazily so
that importing this package never loads models before the app registry is ready):

- `record(action, obj=None, ...)` / `record_objects(action, objs, ...)` — services.py
- `audit_context(actor=..., channel=...)` — context.py
- `verify()` / `run_verification()` / `write_checkpoint()` — verification.py (docs/audit.md)
- `audit_status()` — selectors.py: the last check and checkpoint, for the overview page (/metrics reads the chain state and the last checkpoint itself)
"""

from __future__ import annotations

from typing import Any

from .context import audit_context, current

__all__ = ["audit_context", "current"]


def __getattr__(name: str) -> Any:
    if name in ("record", "record_objects"):
        from . import services  # cycle: the app registry imports this package before models load

        return getattr(services, name)
    raise AttributeError(name)
