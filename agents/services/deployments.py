"""Creating a deployment: its target, its rollout plan, its frozen document, its rows.

The policy document is frozen on the deployment when it is made (agents/compile.py), so
every device of it gets the same policy however long the rollout takes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, router, transaction
from django.utils import timezone

from agents.choices import DeploymentTrigger
from agents.compile import deployment_document
from agents.device_policy import device_entries, device_settings
from agents.models import Deployment, DeviceDeployment
from agents.selectors import resolve_target
from agents.services.rollout import deployment_refresh, start_wave
from agents.services.transitions import S, move, now_iso
from compiler.validate import probe_errors
from core.audit.choices import AuditAction
from core.audit.services import deferred, record
from core.bulk_rows import insert_rows
from rules.models import Device

_ROLLOUT_KEYS = {"canary", "wave_size", "wave_percent", "halt_on_failure"}


def _rollout_config(rollout: dict | None) -> dict:
    """The rollout asked for, checked, with defaults: no canary, one wave, halt on failure."""
    rollout = dict(rollout or {})
    unknown = set(rollout) - _ROLLOUT_KEYS
    if unknown:
        raise ValidationError({"rollout": [f"unknown keys: {', '.join(sorted(unknown))}"]})
    out: dict[str, Any] = {
        "canary": 0,
        "wave_size": None,
        "wave_percent": None,
        "halt_on_failure": True,
    }
    for key, low, high in (
        ("canary", 0, 100_000),
        ("wave_size", 1, 100_000),
        ("wave_percent", 1, 100),
    ):
        value = rollout.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValidationError({"rollout": [f"{key} must be an integer {low}..{high}"]})
        out[key] = value
    if out["wave_size"] and out["wave_percent"]:
        raise ValidationError({"rollout": ["give wave_size or wave_percent, not both"]})
    halt = rollout.get("halt_on_failure", True)
    if not isinstance(halt, bool):
        raise ValidationError({"rollout": ["halt_on_failure must be true or false"]})
    out["halt_on_failure"] = halt
    return out


def plan_waves(count: int, rollout: dict) -> list[int]:
    """Wave sizes: the canary first, then waves of a size or a percentage of the total."""
    sizes: list[int] = []
    remaining = count
    canary = min(rollout.get("canary") or 0, remaining)
    if canary:
        sizes.append(canary)
        remaining -= canary
    if rollout.get("wave_size"):
        step = rollout["wave_size"]
    elif rollout.get("wave_percent"):
        step = max(1, math.ceil(count * rollout["wave_percent"] / 100))
    else:
        step = remaining or 1
    while remaining > 0:
        sizes.append(min(step, remaining))
        remaining -= sizes[-1]
    return sizes


def _confirm_timeout(confirm_timeout: int | None) -> int:
    if confirm_timeout is None:
        confirm_timeout = settings.RAMPART["CONFIRM_TIMEOUT"]
    if (
        isinstance(confirm_timeout, bool)
        or not isinstance(confirm_timeout, int)
        or not 0 <= confirm_timeout <= 3600
    ):
        raise ValidationError({"confirm_timeout": ["must be 0..3600 seconds"]})
    return confirm_timeout


@transaction.atomic
def deploy_create(
    *,
    user: Any = None,
    devices: Sequence[int] | None = None,
    device_group: int | None = None,
    ruleset: int | None = None,
    revision: int | None = None,
    confirm_timeout: int | None = None,
    rollout: dict | None = None,
    trigger: str = DeploymentTrigger.MANUAL,
    reason: str = "",
    probes: list | None = None,
) -> Deployment:
    """Create a deployment and enqueue its first wave once the transaction commits.

    `probes` replaces every device's own health probes for this deployment (`[]`: none);
    None keeps each device's. Older deployments still queued for the same devices are
    superseded: they would push a policy that is already out of date.
    """
    if probes is not None:
        errors = probe_errors(probes)
        if errors:
            raise ValidationError(errors)
    targets, target = resolve_target(devices=devices, device_group=device_group, ruleset=ruleset)
    if not targets:
        raise ValidationError({"non_field_errors": [f"{target['label']} has no devices"]})
    confirm_timeout = _confirm_timeout(confirm_timeout)
    config = _rollout_config(rollout)
    sizes = plan_waves(len(targets), config)
    frozen = deployment_document(targets, revision)
    # bulk_create sends no save signal: the audit entry below names the deployment without
    # copying its (possibly large) policy document into the log.
    [deployment] = Deployment.objects.bulk_create(
        [
            Deployment(
                document=frozen.document,
                revisions=frozen.revisions,
                created_by=user if getattr(user, "is_authenticated", False) else None,
                trigger=trigger,
                target=target,
                revision=revision,
                confirm_timeout=confirm_timeout,
                rollout=config,
                probes=probes,
                reason=reason[:255],
                created_at=timezone.now(),
                waves=[
                    {
                        "index": i,
                        "size": n,
                        "state": "pending",
                        "started_at": None,
                        "finished_at": None,
                    }
                    for i, n in enumerate(sizes)
                ],
            )
        ]
    )
    record(
        AuditAction.CREATE,
        deployment,
        after={
            "trigger": trigger,
            "target": target,
            "devices": len(targets),
            "waves": sizes,
            "revision": revision,
            "revisions": frozen.revisions,
            "confirm_timeout": confirm_timeout,
            "rollout": config,
            "probes": probes,
            "reason": reason[:255],
        },
    )
    _create_device_deployments(deployment, targets, sizes, frozen.document)
    _supersede_queued(deployment)
    start_wave(deployment, 0)
    return deployment


def _create_device_deployments(
    deployment: Deployment, targets: list[Device], sizes: list[int], document: dict
) -> None:
    """One queued device deployment per target, in waves of the planned sizes, each with the
    device settings the document compiles for it."""
    dds: list[DeviceDeployment] = []
    entries = device_entries(document)
    position = 0
    now = now_iso()
    for wave, size in enumerate(sizes):
        for device in targets[position : position + size]:
            dds.append(
                DeviceDeployment(
                    deployment=deployment,
                    device=device,
                    wave=wave,
                    settings=device_settings(document, device, entries),
                    transitions=[{"state": S.QUEUED, "at": now}],
                )
            )
        position += size
    # COPY on PostgreSQL (core.bulk_rows): one INSERT binding 10,000 rows × 20 values
    # spent seconds converting its parameters
    conn = connections[router.db_for_write(DeviceDeployment)]
    fields = [f for f in DeviceDeployment._meta.concrete_fields if not f.primary_key]
    insert_rows(
        DeviceDeployment,
        fields,
        ([f.get_db_prep_save(f.pre_save(dd, True), conn) for f in fields] for dd in dds),
    )


def _supersede_queued(deployment: Deployment) -> None:
    """Supersede older device deployments still queued for this deployment's devices: their
    states in one chain append, and no policy document read (each older row's deployment
    is only named)."""
    by_device = dict(deployment.device_deployments.values_list("device_id", "pk"))
    older = (
        DeviceDeployment.objects.filter(device_id__in=by_device, state=S.QUEUED)
        .exclude(deployment=deployment)
        .select_related("device")
        .defer("device__facts", "device__drift_diff")
    )
    touched: set[int] = set()
    with deferred():
        for old in older:
            move(
                old,
                S.SUPERSEDED,
                f"superseded by deployment #{deployment.pk}",
                superseded_by_id=by_device[old.device_id],
            )
            touched.add(old.deployment_id)
    for deployment_id in touched:
        transaction.on_commit(lambda i=deployment_id: deployment_refresh(deployment_id=i))
