"""Writes of the ordered references of devices and device groups, given by name.

Order matters (POLICY-FORMAT.md, "Meaning" step 5: group order, then each group's rule set
order, then the device's own), so each setter replaces the whole list in one transaction.
A device's own lists are written through `device_changes`, which holds them for approval
where the device's rule sets require it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model

from rules.models import (
    Device,
    DeviceGroup,
    DeviceGroupRuleSet,
    DeviceMembership,
    DeviceRuleSet,
    RuleSet,
)


def resolve_names(model: type[Model], names: Sequence[str], field: str) -> list[Model]:
    """The named objects, in the given order; a field-keyed error for unknown or repeated names."""
    if not isinstance(names, (list, tuple)):
        raise ValidationError({field: [f"must be a list of {model._meta.verbose_name} names"]})
    found = {
        obj.name: obj
        for obj in model.objects.filter(name__in=[n for n in names if isinstance(n, str)])
    }
    errors, seen = [], set()
    for i, name in enumerate(names):
        if name in seen:
            errors.append(f"[{i}] {name!r} is listed twice")
        elif name not in found:
            errors.append(f"[{i}] unknown {model._meta.verbose_name} {name!r}")
        seen.add(name)
    if errors:
        raise ValidationError({field: errors})
    return [found[name] for name in names]


def _replace(
    links: Any, make: Callable[[Any, int], object], current: list[int], targets: list[Model]
) -> None:
    """Replace the link rows by `make(target, position)` for each target, unless unchanged."""
    if current == [t.pk for t in targets]:
        return  # unchanged: keep the rows (and the audit log) quiet
    links.all().delete()
    for position, target in enumerate(targets, start=1):
        make(target, position)


@transaction.atomic
def device_set_groups(*, device: Device, groups: Sequence[str]) -> None:
    """Set the device's groups, in order (their rule sets apply before the device's own)."""
    targets = resolve_names(DeviceGroup, groups, "groups")
    current = list(device.group_links.order_by("position", "id").values_list("group_id", flat=True))
    _replace(
        device.group_links,
        lambda g, p: DeviceMembership.objects.create(device=device, group=g, position=p),
        current,
        targets,
    )


@transaction.atomic
def device_set_rulesets(*, device: Device, rulesets: Sequence[str]) -> None:
    """Set the device's own rule sets, in order."""
    targets = resolve_names(RuleSet, rulesets, "rulesets")
    current = list(
        device.ruleset_links.order_by("position", "id").values_list("ruleset_id", flat=True)
    )
    _replace(
        device.ruleset_links,
        lambda r, p: DeviceRuleSet.objects.create(device=device, ruleset=r, position=p),
        current,
        targets,
    )


@transaction.atomic
def device_group_set_rulesets(*, group: DeviceGroup, rulesets: Sequence[str]) -> None:
    """Set a device group's rule sets, in order."""
    targets = resolve_names(RuleSet, rulesets, "rulesets")
    current = list(
        group.ruleset_links.order_by("position", "id").values_list("ruleset_id", flat=True)
    )
    _replace(
        group.ruleset_links,
        lambda r, p: DeviceGroupRuleSet.objects.create(group=group, ruleset=r, position=p),
        current,
        targets,
    )
