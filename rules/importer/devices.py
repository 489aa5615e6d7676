"""Import step for devices and device groups as policy targets: their fields, and their
ordered links to groups and rule sets."""

from __future__ import annotations

import ipaddress

from compiler import FieldError
from rules.console_sources import console_lockout_errors
from rules.importer.state import ImportRun
from rules.models import (
    Device,
    DeviceGroup,
    DeviceGroupRuleSet,
    DeviceMembership,
    DeviceRuleSet,
    RuleSet,
)
from rules.services.device_changes import device_requires_approval, device_settings


def _links(
    run: ImportRun,
    owner,
    related: str,
    target_field: str,
    targets: dict,
    names: list[str],
    link_model,
    path: str,
) -> bool:
    """Replace an ordered link list (groups, rule sets) when it differs; True if changed."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            run.errors.append(FieldError(f"{path}[{i}]", f"{name!r} is listed twice"))
        seen.add(name)
    current = [getattr(link, target_field).name for link in getattr(owner, related).all()]
    if current == names or len(seen) != len(names):
        return False
    getattr(owner, related).all().delete()
    owner_field = "device" if link_model in (DeviceMembership, DeviceRuleSet) else "group"
    link_model.objects.bulk_create(
        [
            link_model(**{owner_field: owner, target_field: targets[n], "position": i})
            for i, n in enumerate(names)
        ]
    )
    return True


def import_device_groups(run: ImportRun) -> None:
    rows = run.upsert(
        DeviceGroup,
        "device_groups",
        run.doc.device_groups,
        lambda g: {"description": g.description, "probes": [p.to_dict() for p in g.probes]},
    )
    rulesets = {r.name: r for r in RuleSet.objects.all()}
    for g in run.doc.device_groups:
        group = DeviceGroup.objects.prefetch_related("ruleset_links__ruleset").get(
            pk=rows[g.name].pk
        )
        if (
            _links(
                run,
                group,
                "ruleset_links",
                "ruleset",
                rulesets,
                list(g.rulesets),
                DeviceGroupRuleSet,
                f"device_groups[{g.name}].rulesets",
            )
            and g.name not in run.plan.created["device_groups"]
        ):
            run.plan.updated["device_groups"].append(g.name)
    run.check()


def _device_fields(d) -> dict:
    return {
        "address": str(ipaddress.ip_address(d.address)),
        "agent_port": d.agent_port,
        "description": d.description,
        "default_input": d.default_input,
        "default_forward": d.default_forward,
        "default_output": d.default_output,
        "management_sources": list(d.management_sources),
        "stateful": d.stateful,
        "allow_loopback": d.allow_loopback,
        "probes": [p.to_dict() for p in d.probes],
    }


def _check_console_covered(run: ImportRun) -> None:
    """New devices, and devices whose management sources change, must let the console in
    (rules/console_sources.py); the override is an admin's, set on the device itself."""
    stored = {d.name: d for d in Device.objects.filter(name__in=[d.name for d in run.doc.devices])}
    for d in run.doc.devices:
        row = stored.get(d.name)
        if row is not None and list(row.management_sources or []) == list(d.management_sources):
            continue
        candidate = row or Device(name=d.name)
        candidate.management_sources = list(d.management_sources)
        for message in console_lockout_errors(candidate).get("management_sources", []):
            run.errors.append(FieldError(f"devices[{d.name}].management_sources", message))


def _check_approval(run: ImportRun) -> None:
    """An import does not bypass four-eyes: what a device under approval enforces changes
    only through a pending change (rules/services/device_changes.py)."""
    stored = {d.name: d for d in Device.objects.filter(name__in=[d.name for d in run.doc.devices])}
    for d in run.doc.devices:
        row = stored.get(d.name)
        if row is None:
            continue
        wanted = {
            **{f"default_{c}": getattr(d, f"default_{c}") for c in ("input", "forward", "output")},
            "management_sources": list(d.management_sources),
            "stateful": d.stateful,
            "allow_loopback": d.allow_loopback,
            "groups": list(d.groups),
            "rulesets": list(d.rulesets),
        }
        live = device_settings(row)
        changed = sorted(k for k, v in wanted.items() if live[k] != v)
        if changed and device_requires_approval(row, groups=d.groups, rulesets=d.rulesets):
            run.errors.append(
                FieldError(
                    f"devices[{d.name}]",
                    f"changes {', '.join(changed)} of a device whose rule sets require "
                    "approval: change it through the API or the dashboard, where it waits "
                    "for another approver",
                )
            )


def import_devices(run: ImportRun) -> None:
    for d in run.doc.devices:
        if d.address is None:
            run.errors.append(
                FieldError(
                    f"devices[{d.name}].address",
                    "is required to import a device (where its agent listens)",
                )
            )
    _check_console_covered(run)
    _check_approval(run)
    run.check()
    rows = run.upsert(Device, "devices", run.doc.devices, _device_fields)
    groups = {g.name: g for g in DeviceGroup.objects.all()}
    rulesets = {r.name: r for r in RuleSet.objects.all()}
    for d in run.doc.devices:
        device = Device.objects.prefetch_related(
            "group_links__group", "ruleset_links__ruleset"
        ).get(pk=rows[d.name].pk)
        changed = _links(
            run,
            device,
            "group_links",
            "group",
            groups,
            list(d.groups),
            DeviceMembership,
            f"devices[{d.name}].groups",
        )
        changed |= _links(
            run,
            device,
            "ruleset_links",
            "ruleset",
            rulesets,
            list(d.rulesets),
            DeviceRuleSet,
            f"devices[{d.name}].rulesets",
        )
        if changed and d.name not in run.plan.created["devices"] + run.plan.updated["devices"]:
            run.plan.updated["devices"].append(d.name)
    run.check()
