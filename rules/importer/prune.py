"""Import step `prune`: delete what the document no longer names, inside its scope only,
users before what they use.

A document speaks for the kinds and names of its `scope` (all of the policy when it has
none), and one that lists no devices never deletes a device or a device group. A prune that
would delete a device, a device group or more than `CONFIRM_OVER` objects runs only with
`confirm_prune` equal to that count (a dry run reports the count it needs).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Model, ProtectedError

from compiler import FieldError
from rules.importer.plan import PruneNotConfirmed
from rules.importer.state import ImportRun
from rules.models import (
    AddressGroup,
    AddressObject,
    Device,
    DeviceGroup,
    RuleSet,
    Service,
    ServiceGroup,
    Zone,
)
from rules.services import object_delete, zone_delete

CONFIRM_OVER = 10  # more deletions than this need confirm_prune
ALWAYS_CONFIRM = ("devices", "device_groups")
_ORDER: tuple[tuple[type[Model], str], ...] = (
    (Device, "devices"),
    (DeviceGroup, "device_groups"),
    (RuleSet, "rulesets"),
    (Zone, "zones"),
    (ServiceGroup, "service_groups"),
    (Service, "services"),
    (AddressGroup, "address_groups"),
    (AddressObject, "addresses"),
)


def _covered(run: ImportRun, kind: str) -> bool:
    """Whether the document speaks for `kind` at all."""
    if kind in ALWAYS_CONFIRM and not run.doc.devices:
        return False
    return run.doc.scope is None or run.doc.scope.covers(kind)


def doomed(run: ImportRun) -> list[tuple[type[Model], str, list]]:
    """What prune deletes, by kind, in deletion order: the rows of each covered kind (and
    of its covered names, when the scope names some) that the document no longer names."""
    out = []
    for model, kind in _ORDER:
        if not _covered(run, kind):
            continue
        rows = model.objects.exclude(name__in={o.name for o in getattr(run.doc, kind)})
        names = run.doc.scope.names(kind) if run.doc.scope is not None else None
        if names is not None:
            rows = rows.filter(name__in=names)
        found = list(rows.order_by("name"))
        if found:
            out.append((model, kind, found))
    return out


def _check_confirmed(run: ImportRun, plan: list[tuple[type[Model], str, list]]) -> None:
    """Record the confirmation a large or fleet-wide prune needs; refuse a real run that
    does not carry it."""
    total = sum(len(rows) for _, _, rows in plan)
    if not (total > CONFIRM_OVER or any(kind in ALWAYS_CONFIRM for _, kind, _ in plan)):
        return
    run.plan.confirm_prune = total
    if run.plan.dry_run or run.confirm_prune == total:
        return
    raise PruneNotConfirmed(
        total, {kind: [o.name for o in rows] for _, kind, rows in plan}, run.confirm_prune
    )


def prune(run: ImportRun) -> None:
    """Delete what the document no longer names, inside its scope, users before what they use."""
    plan = doomed(run)
    _check_confirmed(run, plan)
    for model, kind, rows in plan:
        if model in (AddressGroup, ServiceGroup):  # nested groups: drop their edges first
            for g in rows:
                g.members.all().delete()
        for obj in rows:
            try:
                if model in (Device, DeviceGroup, RuleSet):
                    obj.delete()
                elif model is Zone:
                    zone_delete(obj)
                else:
                    object_delete(obj)
            except (ValidationError, ProtectedError) as exc:
                msgs = (
                    exc.messages
                    if isinstance(exc, ValidationError)
                    else [f"still referenced by {len(exc.protected_objects)} other rows"]
                )
                run.errors += [
                    FieldError(f"{kind}[{obj.name}]", f"cannot prune: {m}") for m in msgs
                ]
                continue
            run.plan.deleted[kind].append(obj.name)
    run.check()
