"""Writes of what a device enforces, under four-eyes where its rule sets require approval.

A device's default policies, management sources, flags, rule sets and groups decide its
kernel as much as its rules do. When any rule set on the device (its own or its groups',
before or after the change) requires approval, a change of those settings is held as a
`PendingDeviceChange` instead of being written to the device row, which keeps the approved
settings every compile reads; an approver who did not author it applies it (or rejects it),
audited. A device group's rule sets are held alike when a rule set of the group (before or
after) or of one of its devices requires approval. Other fields (name, address, tags, ...)
are written at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.accounts import roles
from core.audit.choices import AuditAction
from core.audit.context import current, current_user
from core.audit.services import record
from rules.models import (
    Device,
    DeviceChangeStatus,
    DeviceGroup,
    PendingDeviceChange,
    RuleSet,
)
from rules.services.device_refs import (
    device_group_set_rulesets,
    device_set_groups,
    device_set_rulesets,
    resolve_names,
)
from rules.services.objects import object_save

#: Device columns that change what the kernel enforces.
ENFORCED_FIELDS = (
    "default_input",
    "default_forward",
    "default_output",
    "management_sources",
    "stateful",
    "allow_loopback",
    "forward_fallthrough",
)
#: The device's ordered reference lists (names), also enforced.
ENFORCED_REFS = ("groups", "rulesets")


def device_settings(device: Device) -> dict[str, Any]:
    """The enforced settings of a device row (reference lists as names, in order)."""
    out: dict[str, Any] = {name: getattr(device, name) for name in ENFORCED_FIELDS}
    out["management_sources"] = list(out["management_sources"] or [])
    out["groups"] = list(
        device.group_links.order_by("position", "id").values_list("group__name", flat=True)
    )
    out["rulesets"] = list(
        device.ruleset_links.order_by("position", "id").values_list("ruleset__name", flat=True)
    )
    return out


def device_requires_approval(
    device: Device | None, *, groups: Iterable[str] = (), rulesets: Iterable[str] = ()
) -> bool:
    """True when a rule set on `device` (directly or through a group), or one of the named
    groups or rule sets, requires approval."""
    query = Q(name__in=list(rulesets)) | Q(device_groups__name__in=list(groups))
    if device is not None and device.pk is not None:
        query |= Q(device_links__device=device) | Q(
            device_group_links__group__device_links__device=device
        )
    return RuleSet.objects.filter(query, requires_approval=True).exists()


def group_requires_approval(group: DeviceGroup, *, rulesets: Iterable[str] = ()) -> bool:
    """True when a rule set of `group`, of one of its devices (directly or through any of
    their groups), or one of the named rule sets, requires approval."""
    members = group.device_links.values("device_id")
    query = (
        Q(name__in=list(rulesets))
        | Q(device_group_links__group=group)
        | Q(device_links__device__in=members)
        | Q(device_group_links__group__device_links__device__in=members)
    )
    return RuleSet.objects.filter(query, requires_approval=True).exists()


def pending_device_change(target: Device | DeviceGroup) -> PendingDeviceChange | None:
    """The change of a device (or device group) waiting for approval, if any."""
    return target.pending_changes.filter(status=DeviceChangeStatus.PENDING).first()


@transaction.atomic
def device_create(*, device: Device, refs: Mapping[str, list[str]]) -> Device:
    """Create a device and set its groups and rule sets (nothing is deployed to it yet)."""
    object_save(device)
    _set_refs(device, refs)
    return device


@transaction.atomic
def device_update(
    *, device: Device, data: Mapping[str, Any], refs: Mapping[str, list[str]]
) -> PendingDeviceChange | None:
    """Apply an edit of `device`; return the pending change holding its enforced part when
    the device's rule sets require approval (None: everything was written).

    The requested values are validated (as the model and the reference resolution would)
    before they are held, so an approver never approves what cannot be applied.
    """
    live = Device.objects.select_for_update().get(pk=device.pk)
    before = device_settings(live)
    requested = {k: v for k, v in data.items() if k in ENFORCED_FIELDS}
    requested |= {k: list(v) for k, v in refs.items() if k in ENFORCED_REFS}
    for name, value in data.items():
        if name not in ENFORCED_FIELDS:
            setattr(device, name, value)
    if not requested:  # nothing enforced: a pending change (if any) stays as it is
        object_save(device)
        return None
    held = pending_device_change(live)
    wanted = {**(held.after if held is not None else {}), **requested}
    changed = {k: v for k, v in wanted.items() if before[k] != v}
    if not device_requires_approval(
        live, groups=changed.get("groups", ()), rulesets=changed.get("rulesets", ())
    ):
        for name in ENFORCED_FIELDS:
            if name in requested:
                setattr(device, name, requested[name])
        object_save(device)
        _set_refs(device, {k: v for k, v in requested.items() if k in ENFORCED_REFS})
        return None
    _validate(device, changed)
    for name in ENFORCED_FIELDS:  # the row keeps the approved settings
        setattr(device, name, getattr(live, name))
    object_save(device)
    return _hold({"device": device}, held, before, changed)


@transaction.atomic
def device_group_update(
    *, group: DeviceGroup, data: Mapping[str, Any], refs: Mapping[str, list[str]]
) -> PendingDeviceChange | None:
    """Apply an edit of a device group; return the pending change holding its rule sets
    when approval is required (`group_requires_approval`), else None."""
    live = DeviceGroup.objects.select_for_update().get(pk=group.pk)
    for name, value in data.items():
        setattr(group, name, value)
    object_save(group)
    if "rulesets" not in refs:
        return None
    wanted = list(refs["rulesets"])
    if not group_requires_approval(live, rulesets=wanted):
        device_group_set_rulesets(group=group, rulesets=wanted)
        return None
    resolve_names(RuleSet, wanted, "rulesets")
    before = {
        "rulesets": list(
            live.ruleset_links.order_by("position", "id").values_list("ruleset__name", flat=True)
        )
    }
    held = pending_device_change(live)
    changed = {"rulesets": wanted} if wanted != before["rulesets"] else {}
    return _hold({"group": group}, held, before, changed)


def _set_refs(device: Device, refs: Mapping[str, list[str]]) -> None:
    if "groups" in refs:
        device_set_groups(device=device, groups=refs["groups"])
    if "rulesets" in refs:
        device_set_rulesets(device=device, rulesets=refs["rulesets"])


def _validate(device: Device, changed: Mapping[str, Any]) -> None:
    """Refuse, field by field, what the change could not apply."""
    candidate = Device.objects.get(pk=device.pk)
    for name in ENFORCED_FIELDS:
        if name in changed:
            setattr(candidate, name, changed[name])
    candidate.full_clean()
    if "groups" in changed:
        resolve_names(DeviceGroup, changed["groups"], "groups")
    if "rulesets" in changed:
        resolve_names(RuleSet, changed["rulesets"], "rulesets")


def _hold(
    target: Mapping[str, Device | DeviceGroup],
    held: PendingDeviceChange | None,
    before: Mapping[str, Any],
    changed: Mapping[str, Any],
) -> PendingDeviceChange | None:
    """Record the change as pending; it replaces (and supersedes) an older pending one."""
    user = current_user()
    authors: set[int] = {user.pk} if user is not None else set()
    if held is not None:
        held = PendingDeviceChange.objects.select_for_update().get(pk=held.pk)
        authors |= set(held.authors)
        held.status = DeviceChangeStatus.SUPERSEDED
        held.save(update_fields=["status"])
    if not changed:
        return None  # the request puts back the approved settings: nothing is left to approve
    return PendingDeviceChange.objects.create(
        **target,
        before={k: before[k] for k in changed},
        after=dict(changed),
        author=user,
        author_name=user.get_username() if user is not None else (current().actor or "system"),
        authors=sorted(authors),
        reason=current().reason or "",
    )


def _check_reviewer(change: PendingDeviceChange, reviewer: Any) -> None:
    if reviewer is None or not getattr(reviewer, "is_authenticated", False):
        raise PermissionDenied("a signed-in approver must review a change")
    if reviewer.pk == change.author_id or reviewer.pk in (change.authors or []):
        raise PermissionDenied("you cannot review a change you made: another approver must")
    if not roles.has_any(reviewer, roles.CAN_APPROVE):
        raise PermissionDenied("only approvers can review changes")
    if change.status != DeviceChangeStatus.PENDING:
        raise ValidationError({"status": [f"this change is {change.status}, not pending"]})


def _review(
    *, change: PendingDeviceChange, reviewer: Any, comment: str, status: str, action: str
) -> PendingDeviceChange:
    change = PendingDeviceChange.objects.select_for_update().get(pk=change.pk)
    _check_reviewer(change, reviewer)
    change.status = status
    change.reviewer = reviewer
    change.reviewer_name = reviewer.get_username()
    change.review_comment = comment
    change.reviewed_at = timezone.now()
    change.save(
        update_fields=["status", "reviewer", "reviewer_name", "review_comment", "reviewed_at"]
    )
    record(
        action,
        change,
        before=change.before,
        after={**change.after, "status": status, "comment": comment},
        reason=current().reason or comment,
        extra={"target": str(change.target)},
        user=reviewer,
    )
    return change


@transaction.atomic
def device_change_approve(
    *, change: PendingDeviceChange, reviewer: Any, comment: str = ""
) -> PendingDeviceChange:
    """Approve a pending device change and write it to the device (audited); its author(s)
    cannot. The next deployment pushes it."""
    change = _review(
        change=change,
        reviewer=reviewer,
        comment=comment,
        status=DeviceChangeStatus.APPROVED,
        action=AuditAction.DEVICE_CHANGE_APPROVE,
    )
    if change.group_id is not None:
        device_group_set_rulesets(group=change.group, rulesets=change.after["rulesets"])
        return change
    device = Device.objects.select_for_update().get(pk=change.device_id)
    for name in ENFORCED_FIELDS:
        if name in change.after:
            setattr(device, name, change.after[name])
    object_save(device)
    _set_refs(device, {k: v for k, v in change.after.items() if k in ENFORCED_REFS})
    return change


@transaction.atomic
def device_change_reject(
    *, change: PendingDeviceChange, reviewer: Any, comment: str
) -> PendingDeviceChange:
    """Reject a pending device change (say why); the device keeps its approved settings."""
    if not (comment or "").strip():
        raise ValidationError({"comment": ["say why the change is rejected"]})
    return _review(
        change=change,
        reviewer=reviewer,
        comment=comment,
        status=DeviceChangeStatus.REJECTED,
        action=AuditAction.DEVICE_CHANGE_REJECT,
    )
