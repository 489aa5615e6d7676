"""Import entry points: validate the whole document, then apply it step by step inside one
transaction (a dry run is the same transaction rolled back)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from django.db import transaction

from core.audit.choices import AuditAction, AuditChannel
from core.audit.context import audit_context
from core.audit.services import record
from rules.importer.devices import import_device_groups, import_devices
from rules.importer.objects import import_objects
from rules.importer.plan import Plan
from rules.importer.prune import prune
from rules.importer.rulesets import import_rulesets
from rules.importer.state import ImportRun
from rules.importer.text import load_text, parse_document
from rules.revisions import revision_batch


def _apply(run: ImportRun) -> None:
    """Creation in dependency order; pruning last, in the reverse."""
    import_objects(run)
    import_rulesets(run)
    import_device_groups(run)
    import_devices(run)
    if run.plan.prune:
        prune(run)


def plan_import(doc_dict: object, *, prune: bool | None = None) -> Plan:
    """What importing `doc_dict` would do; changes nothing."""
    return import_document(doc_dict, prune=prune, dry_run=True)


def import_document(
    doc_dict: object,
    *,
    prune: bool | None = None,
    dry_run: bool = False,
    actor: object = None,
    confirm_prune: int | None = None,
) -> Plan:
    """Validate, then apply in one transaction; returns the plan of what was (or would be) done.

    `prune` None follows the document's own `prune:` key; prune stays inside the document's
    `scope`, and a prune of devices, device groups or many objects needs `confirm_prune`
    (the count, which a dry run reports). Raises ImportFailed (with paths) and changes
    nothing when any entry is invalid, PruneNotConfirmed when the count is missing.
    """
    doc = parse_document(doc_dict)
    do_prune = bool(doc.prune) if prune is None else prune
    plan = Plan(dry_run=dry_run, prune=do_prune)
    run = ImportRun(doc, plan)
    run.confirm_prune = confirm_prune
    with _acting_as(actor), transaction.atomic():
        # One revision per rule set whose content changed, captured at the end (none when
        # nothing did); the bulk rule writes below touch their rule sets themselves.
        with revision_batch(message="policy import"):
            _apply(run)
        if dry_run:
            transaction.set_rollback(True)
        elif plan.changed:
            _audit(plan)
    return plan


def import_document_file(
    path: str | Path,
    actor: object = None,
    *,
    prune: bool | None = None,
    dry_run: bool = False,
    confirm_prune: int | None = None,
) -> Plan:
    """Import a YAML/JSON file (used by `rampart_bootstrap` and `rampart_import`)."""
    path = Path(path)
    data = load_text(path.read_bytes(), fmt="json" if path.suffix == ".json" else None)
    return import_document(
        data, prune=prune, dry_run=dry_run, actor=actor, confirm_prune=confirm_prune
    )


def _acting_as(actor: object) -> contextlib.AbstractContextManager:
    """Attribute audit entries and revisions to `actor` (e.g. "system:bootstrap", "cli:alice")
    when no request does; in an API request the audit middleware already knows the user."""
    if not isinstance(actor, str):
        return contextlib.nullcontext()
    channel = AuditChannel.CLI if actor.startswith("cli:") else AuditChannel.SYSTEM
    return audit_context(actor=actor, channel=channel)


def _audit(plan: Plan) -> None:
    """The one audit entry of an import, carrying its plan."""
    summary = ", ".join(
        f"{what} {sum(counts.values())}" for what, counts in plan.summary().items() if counts
    )
    record(AuditAction.IMPORT, object_type="policy", name=summary, after=plan.to_dict())
