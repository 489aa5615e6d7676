"""A deployment's rollout: start a wave, then advance, halt or finish it as devices end;
and the operator's two controls over it: resume a halted rollout, cancel one.

Several workers may finish devices of the same wave at once, and an operator may cancel
while they do: the wave counter and the status move with conditional UPDATEs on the
status each step expects, so exactly one of them acts and a late worker never moves a
cancelled or halted rollout on.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from agents import enqueue
from agents.choices import (
    DEPLOYMENT_CANCELLABLE,
    DEPLOYMENT_FINISHED,
    TERMINAL_STATES,
    DeploymentEvent,
    DeploymentStatus,
)
from agents.models import Deployment, DeviceDeployment
from agents.services.transitions import S, move, now_iso
from core.audit.choices import AuditAction
from core.audit.services import record
from rules.models import Device

_ACTIVE = (DeploymentStatus.QUEUED, DeploymentStatus.RUNNING)
_BAD = (S.FAILED, S.ROLLED_BACK)
# wave states a cancel ends; "done" and "failed" waves keep theirs
_OPEN_WAVES = ("pending", "running", "halted")


class RolloutStateError(Exception):
    """The deployment's status does not allow the control asked for (the API answers 409)."""


def start_wave(deployment: Deployment, wave: int) -> None:
    """Mark a wave running and enqueue its device deployments after commit."""
    waves = list(deployment.waves)
    waves[wave] = {**waves[wave], "state": "running", "started_at": now_iso()}
    Deployment.objects.filter(pk=deployment.pk).update(waves=waves, status=DeploymentStatus.RUNNING)
    deployment.waves = waves
    ids = list(
        deployment.device_deployments.filter(wave=wave, state=S.QUEUED).values_list("pk", flat=True)
    )
    transaction.on_commit(lambda: enqueue.device_deployments(ids))


def deployment_refresh(*, deployment_id: int) -> Deployment:
    """Advance the rollout when a wave is done, halt it on failure, or finish it.

    Loops so that a wave with nothing left to push (every device superseded meanwhile)
    is passed over at once instead of waiting for a device that will never report.
    """
    while True:
        deployment = Deployment.objects.defer("document").get(pk=deployment_id)
        if deployment.status in DEPLOYMENT_FINISHED:
            return deployment
        wave = deployment.current_wave
        # cheap test first: in a 1,000-device wave this runs once per device
        unfinished = deployment.device_deployments.filter(wave=wave).exclude(
            state__in=TERMINAL_STATES
        )
        if unfinished.exists():
            return deployment
        rows = list(deployment.device_deployments.values_list("wave", "state"))
        bad = [state for w, state in rows if w == wave and state in _BAD]
        last = wave + 1 >= len(deployment.waves)
        with transaction.atomic():
            if bad and deployment.rollout.get("halt_on_failure", True) and not last:
                acted = _halt(deployment, wave, len(bad))
            elif not last:
                acted = _next_wave(deployment, wave, failed=bool(bad))
            else:
                acted = _finish(deployment, wave, [state for _, state in rows], failed=bool(bad))
        if not acted:  # another worker (or a cancel) moved the rollout first
            return deployment


def _event(kind: str, wave: int, note: str, user: Any = None) -> dict:
    """One entry of `Deployment.events` (waves counted from 1, as the pages show them)."""
    by = user.get_username() if getattr(user, "is_authenticated", False) else "system"
    return {"event": kind, "at": now_iso(), "by": by, "wave": wave + 1, "note": note}


def _halt(deployment: Deployment, wave: int, failures: int) -> bool:
    """Stop the rollout after a failed wave and skip the waves after it; False if lost a race.

    The deployment's `reason` (why it was started) is kept; why it stopped goes to
    `halt_reason` and to `events`.
    """
    waves = [dict(w) for w in deployment.waves]
    waves[wave].update(state="failed", finished_at=now_iso())
    for later in waves[wave + 1 :]:
        later["state"] = "halted"
    why = f"wave {wave + 1} of {len(waves)}: {failures} device(s) failed"
    won = Deployment.objects.filter(pk=deployment.pk, current_wave=wave, status__in=_ACTIVE).update(
        status=DeploymentStatus.HALTED,
        waves=waves,
        finished_at=timezone.now(),
        halt_reason=why,
        events=[*deployment.events, _event(DeploymentEvent.HALTED, wave, why)],
    )
    if not won:
        return False
    skipped = deployment.device_deployments.filter(wave__gt=wave, state=S.QUEUED).select_related(
        "device"
    )
    for dd in skipped:
        move(dd, S.SKIPPED, f"rollout halted: {why}")
    record(
        AuditAction.DEPLOY_STATE,
        deployment,
        after={"status": DeploymentStatus.HALTED},
        extra={"wave": wave, "failures": failures},
    )
    return True


def _next_wave(deployment: Deployment, wave: int, *, failed: bool) -> bool:
    """Close `wave` and start the next one; False if another worker already did."""
    won = Deployment.objects.filter(pk=deployment.pk, current_wave=wave, status__in=_ACTIVE).update(
        current_wave=wave + 1
    )
    if not won:
        return False
    waves = list(deployment.waves)
    waves[wave] = {
        **waves[wave],
        "state": "failed" if failed else "done",
        "finished_at": now_iso(),
    }
    deployment.waves = waves
    deployment.current_wave = wave + 1
    start_wave(deployment, wave + 1)
    return True


def _finish(deployment: Deployment, wave: int, states: list[str], *, failed: bool) -> bool:
    """Close the last wave and give the deployment its final status (audited once); False
    if another worker (or a cancel) got there first."""
    if all(s == S.SUPERSEDED for s in states):
        status = DeploymentStatus.SUPERSEDED
    elif any(s in _BAD for s in states):
        status = DeploymentStatus.FAILED
    else:
        status = DeploymentStatus.SUCCEEDED
    waves = list(deployment.waves)
    waves[wave] = {
        **waves[wave],
        "state": "failed" if failed else "done",
        "finished_at": now_iso(),
    }
    won = Deployment.objects.filter(pk=deployment.pk, current_wave=wave, status__in=_ACTIVE).update(
        status=status, waves=waves, finished_at=timezone.now()
    )
    if won:
        record(
            AuditAction.DEPLOY_STATE,
            deployment,
            after={"status": status},
            extra={"states": {s: states.count(s) for s in set(states)}},
        )
    return bool(won)


# --- the operator's controls ---------------------------------------------------------------


def _claim(deployment: Deployment, **changes: Any) -> None:
    """Write `changes` only if the rollout is still where it was read; else 409.

    The row is read with select_for_update, which PostgreSQL honours; on SQLite this
    condition is what keeps a worker's step and the control from both acting.
    """
    won = Deployment.objects.filter(
        pk=deployment.pk, status=deployment.status, current_wave=deployment.current_wave
    ).update(**changes)
    if not won:
        raise RolloutStateError(
            f"deployment #{deployment.pk} changed meanwhile (a wave ended); try again"
        )
    for name, value in changes.items():
        setattr(deployment, name, value)


def _locked(deployment_id: int) -> Deployment:
    return Deployment.objects.select_for_update().defer("document").get(pk=deployment_id)


@transaction.atomic
def deployment_resume(
    *, deployment_id: int, user: Any = None, retry_failed: bool = False, reason: str = ""
) -> Deployment:
    """Restart a halted rollout: the waves after the failed one proceed.

    Devices the halt skipped are queued again; those of the failed wave only with
    `retry_failed` (the failed wave then runs again first). A device that a newer
    deployment has targeted meanwhile is superseded instead: its policy is out of date.
    """
    deployment = _locked(deployment_id)
    if deployment.status != DeploymentStatus.HALTED:
        raise RolloutStateError(
            f"deployment #{deployment.pk} is {deployment.status}: "
            "only a halted rollout can be resumed"
        )
    halted = deployment.current_wave
    first = halted if retry_failed else halted + 1
    if first >= len(deployment.waves):
        raise RolloutStateError(
            f"deployment #{deployment.pk} has no wave after wave {halted + 1}: "
            "resume it with retry_failed to push the failed devices again"
        )
    waves = [dict(w) for w in deployment.waves]
    for wave in waves[first:]:
        wave.update(state="pending", started_at=None, finished_at=None)
    note = "retrying the failed wave" if retry_failed else f"from wave {first + 1}"
    if reason:
        note += f": {reason}"
    _claim(
        deployment,
        status=DeploymentStatus.RUNNING,
        current_wave=first,
        waves=waves,
        halt_reason="",
        finished_at=None,
        events=[*deployment.events, _event(DeploymentEvent.RESUMED, halted, note, user)],
    )
    requeued, superseded = _requeue(deployment, halted, retry_failed=retry_failed)
    start_wave(deployment, first)
    # moves on at once if that wave has nothing left to push (all superseded)
    transaction.on_commit(lambda: deployment_refresh(deployment_id=deployment.pk))
    record(
        AuditAction.DEPLOY_RESUME,
        deployment,
        before={"status": DeploymentStatus.HALTED},
        after={"status": DeploymentStatus.RUNNING, "wave": first},
        reason=reason or None,
        extra={"retry_failed": retry_failed, "requeued": requeued, "superseded": superseded},
        user=user if getattr(user, "is_authenticated", False) else None,
    )
    return deployment


def _requeue(deployment: Deployment, halted: int, *, retry_failed: bool) -> tuple[int, int]:
    """Queue again the devices a resume restarts; returns (queued, superseded)."""
    wanted = Q(wave__gt=halted, state=S.SKIPPED)
    if retry_failed:
        wanted |= Q(wave=halted, state__in=_BAD)
    dds = list(deployment.device_deployments.filter(wanted).select_related("device"))
    newer = {
        dd.device_id: dd
        for dd in DeviceDeployment.objects.filter(
            device_id__in=[dd.device_id for dd in dds], deployment_id__gt=deployment.pk
        ).order_by("deployment_id")
    }
    queued = 0
    for dd in dds:
        later = newer.get(dd.device_id)
        if later is not None:
            move(
                dd,
                S.SUPERSEDED,
                f"superseded by deployment #{later.deployment_id} while halted",
                superseded_by=later,
            )
        elif dd.state == S.SKIPPED:
            move(dd, S.QUEUED, "rollout resumed", finished_at=None)
            queued += 1
        else:
            _retry(dd)
            queued += 1
    return queued, len(dds) - queued


def _retry(dd: DeviceDeployment) -> None:
    """Queue a failed device again as a fresh push.

    It gets a new bundle version: the agent has seen (and perhaps rolled back) the old one
    and would take the same version again for a replay.
    """
    highest = (
        DeviceDeployment.objects.filter(device_id=dd.device_id).aggregate(v=Max("version"))["v"]
        or 0
    )
    applied = Device.objects.filter(pk=dd.device_id).values_list("applied_version", flat=True)[0]
    move(
        dd,
        S.QUEUED,
        f"retry after {dd.state} (rollout resumed)",
        version=max(highest, applied or 0) + 1,
        bundle_hash="",
        attempts=0,
        error="",
        agent_response={},
        started_at=None,
        pushed_at=None,
        applied_at=None,
        confirmed_at=None,
        finished_at=None,
    )


@transaction.atomic
def deployment_cancel(*, deployment_id: int, user: Any = None, reason: str = "") -> Deployment:
    """Stop a queued, running or halted rollout for good.

    Devices still waiting end `skipped`; pushes already on the wire finish (an agent
    mid-apply is never interrupted), and the rollout goes no further when they do.
    """
    deployment = _locked(deployment_id)
    before = deployment.status
    if before not in DEPLOYMENT_CANCELLABLE:
        raise RolloutStateError(
            f"deployment #{deployment.pk} is {before}: "
            "only a queued, running or halted rollout can be cancelled"
        )
    event = _event(DeploymentEvent.CANCELLED, deployment.current_wave, reason, user)
    why = f"cancelled by {event['by']}" + (f": {reason}" if reason else "")
    now = now_iso()
    waves = [dict(w) for w in deployment.waves]
    for wave in waves:
        if wave["state"] in _OPEN_WAVES:
            wave.update(state="cancelled", finished_at=now if wave.get("started_at") else None)
    _claim(
        deployment,
        status=DeploymentStatus.CANCELLED,
        waves=waves,
        halt_reason=why[:255],
        finished_at=timezone.now(),
        events=[*deployment.events, event],
    )
    skipped, in_flight = _skip_waiting(deployment, why)
    record(
        AuditAction.DEPLOY_CANCEL,
        deployment,
        before={"status": before},
        after={"status": DeploymentStatus.CANCELLED},
        reason=reason or None,
        extra={"skipped": skipped, "in_flight": in_flight},
        user=user if getattr(user, "is_authenticated", False) else None,
    )
    return deployment


def _skip_waiting(deployment: Deployment, why: str) -> tuple[int, int]:
    """Skip the device deployments not yet started; returns (skipped, still in flight).

    A queued one whose worker already holds the device's push lease is about to push: it
    is left to finish like the pushes already on the wire.
    """
    now = timezone.now()
    skipped = 0
    pending = deployment.device_deployments.exclude(state__in=TERMINAL_STATES).select_related(
        "device"
    )
    in_flight = 0
    for dd in pending:
        lease = dd.device.push_lease_owner or ""
        leased = lease.endswith(f":{dd.pk}") and (dd.device.push_lease_until or now) > now
        if dd.state == S.QUEUED and not leased:
            move(dd, S.SKIPPED, f"deployment {why}")
            skipped += 1
        else:
            in_flight += 1
    return skipped, in_flight
