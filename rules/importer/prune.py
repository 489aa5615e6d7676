"""Import step `prune`: delete what the document no longer names, users before what they use."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import ProtectedError

from compiler import FieldError
from rules.importer.state import ImportRun
from rules.models import (
    AddressGroup,
    AddressObject,
    Device,
    DeviceGroup,
    RuleSet,
    Service,
    ServiceGroup,
)
from rules.services import object_delete


def prune(run: ImportRun) -> None:
    """Delete what the document no longer names, users before what they use."""
    for model, kind in (
        (Device, "devices"),
        (DeviceGroup, "device_groups"),
        (RuleSet, "rulesets"),
        (ServiceGroup, "service_groups"),
        (Service, "services"),
        (AddressGroup, "address_groups"),
        (AddressObject, "addresses"),
    ):
        keep = {o.name for o in getattr(run.doc, kind)}
        doomed = list(model.objects.exclude(name__in=keep).order_by("name"))
        if model in (AddressGroup, ServiceGroup):  # nested groups: drop their edges first
            for g in doomed:
                g.members.all().delete()
        for obj in doomed:
            try:
                if model in (Device, DeviceGroup, RuleSet):
                    obj.delete()
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
