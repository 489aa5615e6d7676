"""Deployments, fleet watching and enrollment: every write of the deploy machinery.

Tasks (agents/tasks.py) and API views only parse, call one function here and render.
A device deployment moves queued → compiling → pushing → applied → confirmed, or ends
failed / rolled_back / superseded / unchanged / skipped; every move is appended to its
`transitions` with a timestamp, and audited.

Concurrency: a push needs the device's lease (a conditional UPDATE on the Device row, so
it works on SQLite and PostgreSQL): at most one push per device is on the wire. A lease
held by a process that died on this host is taken over at once (kill -9, OOM); one held
elsewhere expires with the task time limit.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from agents.choices import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    DeploymentStatus,
    DeploymentTrigger,
    DeviceDeploymentState,
)
from agents.client import (
    AgentClient,
    AgentError,
    AgentIdentityError,
    AgentRefused,
    AgentUnreachable,
    console_public_key_b64,
)
from agents.models import Deployment, DeviceDeployment, EnrollmentToken, RuleCounter
from agents.selectors import device_compile_options
from core.audit.choices import AuditAction
from rampart_agent import protocol
from rules.choices import AgentStatus
from rules.models import Device, DeviceGroup

log = logging.getLogger("rampart.deploy")
S = DeviceDeploymentState


def _conf(name: str, default: Any) -> Any:
    return settings.RAMPART.get(name, default)


# --- audit ------------------------------------------------------------------------------------


def _audit(action: str, obj: Any = None, **kwargs: Any) -> None:
    """One explicit audit entry. State changes are written with queryset updates (no save
    signals), so each transition is logged once, with its meaning, not as a field diff."""
    from core.audit import record

    record(action, obj, **kwargs)


# --- documents and compilation -------------------------------------------------------------


def deployment_document(devices: Sequence[Device], revision: int | None = None) -> dict:
    """The policy document a deployment's devices compile from: the ONE seam for revisions.

    Taken once, in the deployment's transaction, and stored on the deployment, so every
    device of it gets the same policy (and approval rules apply) however long the rollout
    takes. `rules.revisions.deployable_document` uses each rule set's deployable revision
    (the approved one where approval is required) or the revision asked for.
    """
    from rules.models import RuleSetRevision
    from rules.revisions import deployable_document

    revisions = []
    if revision is not None:
        chosen = RuleSetRevision.objects.filter(pk=revision).first()
        if chosen is None:
            raise ValidationError({"revision": [f"unknown rule set revision {revision}"]})
        revisions.append(chosen)
    return deployable_document(devices, revisions=revisions)


def device_document(device: Device, revision: int | None = None) -> dict:
    """The document one device would get if deployed now (previews, CLI)."""
    return deployment_document([device], revision)


@dataclass
class CompiledBundle:
    bundle: dict
    hash: str
    failed_assertions: list[str]


_parsed: OrderedDict[tuple[int, str], Any] = OrderedDict()


def _deployment_policy(deployment: Deployment) -> Any:
    """The parsed document of a deployment, parsed once per worker process (LRU of 4).

    Keyed by id and creation time: a rolled-back test database may hand out an id again.
    """
    from compiler import PolicyDocument

    key = (deployment.pk, deployment.created_at.isoformat())
    doc = _parsed.get(key)
    if doc is None:
        data = Deployment.objects.values_list("document", flat=True).get(pk=deployment.pk)
        if data is None:
            raise ValidationError({"document": ["this deployment has no policy document"]})
        doc = PolicyDocument.from_dict(data)
        _parsed[key] = doc
        while len(_parsed) > 4:
            _parsed.popitem(last=False)
    else:
        _parsed.move_to_end(key)
    return doc


def compile_for_device(
    device: Device, deployment: Deployment, *, now: datetime | None = None
) -> CompiledBundle:
    """Compile the device's bundle from its deployment's document and run its rule sets'
    assertions against it. Raises compiler.CompilerError (never retried)."""
    from compiler import compile_device, device_assertions

    doc = _deployment_policy(deployment)
    options = device_compile_options(device)
    now = now or timezone.now()
    bundle = compile_device(doc, device.name, options=options, now=now)
    failed: list[str] = []
    if any(rs.assertions for rs in doc.device_rulesets(doc.device(device.name))):
        failed = [
            r.message()
            for r in device_assertions(doc, device.name, now=now, options=options)
            if not r.passed
        ]
    # pushed without the rule index: the agent does not use it and the hash does not cover it
    return CompiledBundle(bundle.to_dict(rules=False), bundle.hash, failed)


# --- creating deployments -------------------------------------------------------------------


def _rollout_config(rollout: dict | None) -> dict:
    rollout = dict(rollout or {})
    unknown = set(rollout) - {"canary", "wave_size", "wave_percent", "halt_on_failure"}
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


def resolve_target(
    *,
    devices: Sequence[int] | None = None,
    device_group: int | None = None,
    ruleset: int | None = None,
) -> tuple[list[Device], dict]:
    """The devices a deployment request names, and a description of what was asked."""
    from rules.models import RuleSet

    given = [
        k
        for k, v in (("devices", devices), ("device_group", device_group), ("ruleset", ruleset))
        if v
    ]
    if len(given) != 1:
        raise ValidationError(
            {"non_field_errors": ["give exactly one of devices, device_group, ruleset"]}
        )
    if devices:
        ids = sorted({int(i) for i in devices})
        found = list(Device.objects.filter(pk__in=ids).order_by("name"))
        missing = sorted(set(ids) - {d.pk for d in found})
        if missing:
            raise ValidationError({"devices": [f"unknown device ids: {missing}"]})
        return found, {
            "kind": "devices",
            "ids": ids,
            "label": ", ".join(d.name for d in found[:5])
            + (f" (+{len(found) - 5})" if len(found) > 5 else ""),
        }
    if device_group:
        group = DeviceGroup.objects.filter(pk=device_group).first()
        if group is None:
            raise ValidationError({"device_group": [f"unknown device group {device_group}"]})
        found = list(Device.objects.filter(group_links__group=group).order_by("name"))
        return found, {"kind": "device_group", "ids": [group.pk], "label": f"group {group.name}"}
    rs = RuleSet.objects.filter(pk=ruleset).first()
    if rs is None:
        raise ValidationError({"ruleset": [f"unknown rule set {ruleset}"]})
    found = list(
        Device.objects.filter(
            Q(ruleset_links__ruleset=rs) | Q(group_links__group__ruleset_links__ruleset=rs)
        )
        .distinct()
        .order_by("name")
    )
    return found, {"kind": "ruleset", "ids": [rs.pk], "label": f"rule set {rs.name}"}


def _now_iso() -> str:
    return timezone.now().isoformat()


def _move(dd: DeviceDeployment, state: str, note: str = "", **fields: Any) -> None:
    """Change state, stamp it, save. The only way a device deployment changes state."""
    now = timezone.now()
    dd.state = state
    entry = {"state": state, "at": now.isoformat()}
    if note:
        entry["note"] = note[:500]
    dd.transitions = [*dd.transitions, entry]
    stamp = {
        S.COMPILING: "started_at",
        S.PUSHING: "pushed_at",
        S.APPLIED: "applied_at",
        S.CONFIRMED: "confirmed_at",
    }.get(state)
    if stamp:
        setattr(dd, stamp, now)
    if state in TERMINAL_STATES:
        dd.finished_at = now
    for key, value in fields.items():
        setattr(dd, key, value)
    dd.updated_at = now
    with transaction.atomic():  # the state and its audit entry commit together (one commit)
        DeviceDeployment.objects.filter(pk=dd.pk).update(
            **{
                f.attname: getattr(dd, f.attname)
                for f in DeviceDeployment._meta.concrete_fields
                if not f.primary_key
            }
        )
        _audit(
            AuditAction.DEPLOY_STATE,
            dd,
            after={"state": state},
            extra={
                "deployment": dd.deployment_id,
                "device": dd.device.name,
                "version": dd.version,
                "hash": dd.bundle_hash,
                **({"note": note[:200]} if note else {}),
                **({"error": dd.error[:500]} if state in (S.FAILED, S.ROLLED_BACK) else {}),
            },
        )


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
) -> Deployment:
    """Create a deployment and enqueue its first wave once the transaction commits.

    Older deployments still queued for the same devices are superseded: they would push a
    policy that is already out of date.
    """
    targets, target = resolve_target(devices=devices, device_group=device_group, ruleset=ruleset)
    if not targets:
        raise ValidationError({"non_field_errors": [f"{target['label']} has no devices"]})
    if confirm_timeout is None:
        confirm_timeout = settings.RAMPART["CONFIRM_TIMEOUT"]
    if (
        isinstance(confirm_timeout, bool)
        or not isinstance(confirm_timeout, int)
        or not 0 <= confirm_timeout <= 3600
    ):
        raise ValidationError({"confirm_timeout": ["must be 0..3600 seconds"]})
    config = _rollout_config(rollout)
    sizes = plan_waves(len(targets), config)
    document = deployment_document(targets, revision)
    # bulk_create sends no save signal: the audit entry below names the deployment without
    # copying its (possibly large) policy document into the log.
    [deployment] = Deployment.objects.bulk_create(
        [
            Deployment(
                document=document,
                created_by=user if getattr(user, "is_authenticated", False) else None,
                trigger=trigger,
                target=target,
                revision=revision,
                confirm_timeout=confirm_timeout,
                rollout=config,
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
    _audit(
        AuditAction.CREATE,
        deployment,
        after={
            "trigger": trigger,
            "target": target,
            "devices": len(targets),
            "waves": sizes,
            "revision": revision,
            "confirm_timeout": confirm_timeout,
            "rollout": config,
            "reason": reason[:255],
        },
    )
    dds: list[DeviceDeployment] = []
    position = 0
    now = _now_iso()
    for wave, size in enumerate(sizes):
        for device in targets[position : position + size]:
            dds.append(
                DeviceDeployment(
                    deployment=deployment,
                    device=device,
                    wave=wave,
                    transitions=[{"state": S.QUEUED, "at": now}],
                )
            )
        position += size
    DeviceDeployment.objects.bulk_create(dds)
    dds = list(deployment.device_deployments.select_related("device"))
    by_device = {dd.device_id: dd for dd in dds}
    older = (
        DeviceDeployment.objects.filter(device_id__in=by_device, state=S.QUEUED)
        .exclude(deployment=deployment)
        .select_related("device", "deployment")
    )
    touched: set[int] = set()
    for old in older:
        _move(
            old,
            S.SUPERSEDED,
            f"superseded by deployment #{deployment.pk}",
            superseded_by=by_device[old.device_id],
        )
        touched.add(old.deployment_id)
    for deployment_id in touched:
        transaction.on_commit(lambda i=deployment_id: deployment_refresh(deployment_id=i))
    _start_wave(deployment, 0)
    return deployment


def _start_wave(deployment: Deployment, wave: int) -> None:
    """Mark a wave running and enqueue its device deployments after commit."""
    waves = list(deployment.waves)
    waves[wave] = {**waves[wave], "state": "running", "started_at": _now_iso()}
    Deployment.objects.filter(pk=deployment.pk).update(waves=waves, status=DeploymentStatus.RUNNING)
    deployment.waves = waves
    ids = list(
        deployment.device_deployments.filter(wave=wave, state=S.QUEUED).values_list("pk", flat=True)
    )
    transaction.on_commit(lambda: enqueue_device_deployments(ids))


def enqueue_device_deployments(ids: Iterable[int]) -> None:
    from agents import tasks

    for dd_id in ids:
        tasks.deploy_device.delay(dd_id)


# --- running one device deployment ------------------------------------------------------------


class RetryLater(Exception):
    """Raised to the task when the attempt should be repeated later (with backoff)."""


class DeviceBusy(RetryLater):
    """Another push holds the device's lease."""


def _lease_owner(dd: DeviceDeployment) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{dd.pk}"


def _owner_dead(owner: str) -> bool:
    """True when `owner` was a process on this host that no longer exists (kill -9)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_acquire(dd: DeviceDeployment) -> bool:
    """Take the device's push lease for this device deployment; False if someone holds it."""
    now = timezone.now()
    seconds = _conf("PUSH_LEASE_SECONDS", settings.CELERY_TASK_TIME_LIMIT + 60)
    owner = _lease_owner(dd)
    free = (
        Q(push_lease_owner__isnull=True) | Q(push_lease_until__lt=now) | Q(push_lease_owner=owner)
    )
    current = (
        Device.objects.filter(pk=dd.device_id).values_list("push_lease_owner", flat=True).first()
    )
    if current and current != owner and _owner_dead(current):
        free |= Q(push_lease_owner=current)
    return bool(
        Device.objects.filter(free, pk=dd.device_id).update(
            push_lease_owner=owner, push_lease_until=now + timedelta(seconds=seconds)
        )
    )


def lease_release(dd: DeviceDeployment) -> None:
    Device.objects.filter(pk=dd.device_id, push_lease_owner=_lease_owner(dd)).update(
        push_lease_owner=None, push_lease_until=None
    )


def _next_version(dd: DeviceDeployment, at_least: int = 0) -> int:
    """A bundle version greater than anything this device has seen from us or reported."""
    device = Device.objects.get(pk=dd.device_id)
    highest = (
        DeviceDeployment.objects.filter(device_id=dd.device_id).aggregate(v=Max("version"))["v"]
        or 0
    )
    return max(highest, device.applied_version, at_least) + 1


def device_deployment_run(*, device_deployment_id: int, final_attempt: bool = False) -> str:
    """Compile, check, push and confirm one device's bundle; returns the state reached.

    Safe to run again for the same device deployment (redelivery after a crash): a
    terminal state is left alone, the version is kept, and an agent that already holds
    this version is recognised instead of refusing it as a replay.
    Raises RetryLater when the attempt should be repeated; on `final_attempt` a
    retryable failure is recorded as `failed` instead.
    """
    dd = (
        DeviceDeployment.objects.select_related("device", "deployment")
        .defer("deployment__document")
        .get(pk=device_deployment_id)
    )
    if dd.state in TERMINAL_STATES:
        return dd.state
    if not lease_acquire(dd):
        raise DeviceBusy(f"another push to {dd.device.name} is in flight")
    try:
        dd.refresh_from_db()
        if dd.state in TERMINAL_STATES:  # finished by a duplicate delivery meanwhile
            return dd.state
        dd.attempts += 1
        state = _run_locked(
            dd, final_attempt=final_attempt or dd.attempts >= _conf("DEPLOY_MAX_ATTEMPTS", 5)
        )
    finally:
        lease_release(dd)
    if state in TERMINAL_STATES:
        deployment_refresh(deployment_id=dd.deployment_id)
    return state


def _run_locked(dd: DeviceDeployment, *, final_attempt: bool) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    from compiler import CompilerError

    device = dd.device
    try:
        _move(dd, S.COMPILING, f"attempt {dd.attempts}")
        try:
            compiled = compile_for_device(device, dd.deployment)
        except CompilerError as exc:
            _move(
                dd,
                S.FAILED,
                "compile error",
                error=f"policy does not compile: {exc}",
                agent_response={"errors": [e.to_dict() for e in exc.errors][:50]},
            )
            return dd.state
        except ValidationError as exc:
            _move(dd, S.FAILED, "invalid request", error="; ".join(exc.messages))
            return dd.state
        dd.bundle_hash = compiled.hash
        if compiled.failed_assertions:
            _move(
                dd,
                S.FAILED,
                "assertion failed",
                error="assertion failed, not pushed: " + "; ".join(compiled.failed_assertions),
            )
            return dd.state
        if not dd.version:
            dd.version = _next_version(dd)
        client = AgentClient.for_device(device)
        _move(dd, S.PUSHING, f"version {dd.version}")
        answer = _push(dd, client, compiled.bundle)
        if answer is None:
            return dd.state
        return _after_apply(dd, client, answer)
    except (AgentUnreachable, AgentRefused) as exc:
        if isinstance(exc, AgentRefused) and not exc.retryable:
            return _refused(dd, exc)
        if final_attempt:
            _move(
                dd,
                S.FAILED,
                "gave up",
                error=f"agent unreachable after {dd.attempts} attempts: {exc}",
            )
            return dd.state
        dd.error = f"attempt {dd.attempts}: {exc}"
        dd.transitions = [
            *dd.transitions,
            {"state": dd.state, "at": _now_iso(), "note": f"retrying: {exc}"[:500]},
        ]
        DeviceDeployment.objects.filter(pk=dd.pk).update(
            error=dd.error,
            transitions=dd.transitions,
            attempts=dd.attempts,
            bundle_hash=dd.bundle_hash,
            version=dd.version,
            updated_at=timezone.now(),
        )
        raise RetryLater(str(exc)) from exc
    except AgentIdentityError as exc:
        _move(dd, S.FAILED, "agent identity", error=str(exc))
        return dd.state
    except SoftTimeLimitExceeded:
        _move(dd, S.FAILED, "time limit", error=f"task time limit exceeded while {dd.state}")
        return dd.state


def _refused(dd: DeviceDeployment, exc: AgentRefused) -> str:
    result = exc.body.get("result")
    state = S.ROLLED_BACK if result == "rolled_back" else S.FAILED
    _move(
        dd,
        state,
        f"agent answered {exc.status}",
        agent_response=exc.body,
        error=str(exc.body.get("error") or exc),
    )
    return dd.state


def _push(dd: DeviceDeployment, client: AgentClient, bundle: dict) -> dict | None:
    """POST /v1/apply; on a version conflict, find out what the agent already holds."""
    request = {
        "bundle": bundle,
        "deployment": str(dd.deployment_id),
        "confirm_timeout": dd.deployment.confirm_timeout,
    }
    for _ in range(2):
        try:
            return client.apply(version=dd.version, **request)
        except AgentRefused as exc:
            if exc.status != 409:
                raise
            status = client.status()
            held = _agent_holds(status, dd)
            if held is not None:
                return held
            # The agent has seen a higher version (another console, a local apply): go past it.
            seen = max(
                int((status.get(k) or {}).get("version") or 0)
                for k in ("applied", "pending", "last_rollback")
            )
            dd.version = _next_version(dd, at_least=seen)
            DeviceDeployment.objects.filter(pk=dd.pk).update(
                version=dd.version, updated_at=timezone.now()
            )
    _move(dd, S.FAILED, "version conflict", error="agent refused every version offered (409)")
    return None


def _agent_holds(status: dict, dd: DeviceDeployment) -> dict | None:
    """The apply answer to assume when the agent already took this very push."""
    applied = status.get("applied") or {}
    if applied.get("version") == dd.version and applied.get("hash") == dd.bundle_hash:
        return {
            "result": "applied",
            "hash": dd.bundle_hash,
            "version": dd.version,
            "confirm_deadline": (status.get("pending") or {}).get("deadline"),
            "recovered": True,
            "confirmed": bool(applied.get("confirmed")),
        }
    rollback = status.get("last_rollback") or {}
    if rollback.get("version") == dd.version:
        return {
            "result": "rolled_back",
            "version": dd.version,
            "error": rollback.get("reason"),
            "recovered": True,
        }
    return None


def _after_apply(dd: DeviceDeployment, client: AgentClient, answer: dict) -> str:
    device = dd.device
    result = answer.get("result")
    if result == "rolled_back":
        _move(
            dd,
            S.ROLLED_BACK,
            "agent rolled back",
            agent_response=answer,
            error=str(answer.get("error") or ""),
        )
        return dd.state
    if result == "unchanged":
        _move(dd, S.UNCHANGED, "bundle already applied", agent_response=answer, error="")
        _device_applied(device, dd)
        return dd.state
    if result != "applied":
        _move(
            dd,
            S.FAILED,
            "unexpected answer",
            agent_response=answer,
            error=f"unexpected agent answer {result!r}",
        )
        return dd.state
    _move(dd, S.APPLIED, f"apply_ms={answer.get('apply_ms')}", agent_response=answer, error="")
    if dd.deployment.confirm_timeout <= 0 or answer.get("confirmed"):
        _move(
            dd,
            S.CONFIRMED,
            "no confirm needed" if dd.deployment.confirm_timeout <= 0 else "already confirmed",
        )
        _device_applied(device, dd)
        return dd.state
    return _confirm(dd, client, answer)


def _confirm(dd: DeviceDeployment, client: AgentClient, answer: dict) -> str:
    """Send the commit-confirm; keep trying until the agent's deadline, then look."""
    deadline = time.monotonic() + dd.deployment.confirm_timeout
    delay = 0.2
    last_error = ""
    while True:
        try:
            confirmed = client.confirm(dd.version)
            _move(dd, S.CONFIRMED, "", agent_response={**answer, "confirm": confirmed})
            _device_applied(dd.device, dd)
            return dd.state
        except AgentRefused as exc:
            if exc.status == 409:
                _move(
                    dd,
                    S.ROLLED_BACK,
                    "confirm refused",
                    agent_response={**answer, "confirm": exc.body},
                    error=str(exc.body.get("error") or "the agent had already rolled back"),
                )
                return dd.state
            if not exc.retryable:
                raise
            last_error = str(exc)
        except AgentUnreachable as exc:
            last_error = str(exc)
        if time.monotonic() >= deadline:
            break
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 5)
    # The confirm never got through before the deadline: the agent rolls back by itself.
    try:
        status = client.status()
        held = _agent_holds(status, dd)
        if held and held.get("result") == "applied" and held.get("confirmed"):
            _move(dd, S.CONFIRMED, "confirm found applied after retries")
            _device_applied(dd.device, dd)
            return dd.state
    except AgentError:
        pass
    _move(
        dd,
        S.ROLLED_BACK,
        "confirm timed out",
        error=f"confirm did not reach the agent within {dd.deployment.confirm_timeout}s "
        f"({last_error}); the agent rolled back to its last confirmed policy",
    )
    return dd.state


def _device_applied(device: Device, dd: DeviceDeployment) -> None:
    Device.objects.filter(pk=device.pk).update(
        applied_hash=dd.bundle_hash, applied_version=dd.version or 0, drifted=False, drift_diff=""
    )


def device_deployment_fail(*, device_deployment_id: int, reason: str) -> None:
    """Record a failure the task layer saw (time limit, crash) if nothing else did."""
    dd = DeviceDeployment.objects.select_related("device").get(pk=device_deployment_id)
    if dd.state not in TERMINAL_STATES:
        _move(dd, S.FAILED, "task failed", error=reason)
        deployment_refresh(deployment_id=dd.deployment_id)


# --- waves and the deployment's own status ------------------------------------------------------


def deployment_refresh(*, deployment_id: int) -> Deployment:
    """Advance the rollout when a wave is done, halt it on failure, or finish it.

    Several workers may finish devices of the same wave at once: the wave counter moves
    with a conditional UPDATE, so exactly one of them starts the next wave.
    """
    deployment = Deployment.objects.defer("document").get(pk=deployment_id)
    if deployment.status in (
        DeploymentStatus.SUCCEEDED,
        DeploymentStatus.FAILED,
        DeploymentStatus.HALTED,
        DeploymentStatus.SUPERSEDED,
    ):
        return deployment
    wave = deployment.current_wave
    # cheap test first: in a 1,000-device wave this runs once per device
    if deployment.device_deployments.filter(wave=wave).exclude(state__in=TERMINAL_STATES).exists():
        return deployment
    rows = list(deployment.device_deployments.values_list("wave", "state"))
    in_wave = [state for w, state in rows if w == wave]
    bad = [s for s in in_wave if s in (S.FAILED, S.ROLLED_BACK)]
    waves = list(deployment.waves)
    last = wave + 1 >= len(waves)
    with transaction.atomic():
        if bad and deployment.rollout.get("halt_on_failure", True) and not last:
            won = (
                Deployment.objects.filter(pk=deployment.pk, current_wave=wave)
                .exclude(status=DeploymentStatus.HALTED)
                .update(status=DeploymentStatus.HALTED)
            )
            if not won:
                return deployment
            waves[wave] = {**waves[wave], "state": "failed", "finished_at": _now_iso()}
            for later in waves[wave + 1 :]:
                later["state"] = "halted"
            skipped = deployment.device_deployments.filter(
                wave__gt=wave, state=S.QUEUED
            ).select_related("device")
            for dd in skipped:
                _move(dd, S.SKIPPED, f"rollout halted: wave {wave} had {len(bad)} failure(s)")
            Deployment.objects.filter(pk=deployment.pk).update(
                waves=waves, finished_at=timezone.now(), reason=f"halted after wave {wave}"
            )
            _audit(
                AuditAction.DEPLOY_STATE,
                deployment,
                after={"status": DeploymentStatus.HALTED},
                extra={"wave": wave, "failures": len(bad)},
            )
        elif not last:
            won = Deployment.objects.filter(pk=deployment.pk, current_wave=wave).update(
                current_wave=wave + 1
            )
            if not won:
                return deployment
            waves[wave] = {
                **waves[wave],
                "state": "failed" if bad else "done",
                "finished_at": _now_iso(),
            }
            deployment.waves = waves
            deployment.current_wave = wave + 1
            _start_wave(deployment, wave + 1)
        else:
            states = [state for _, state in rows]
            if all(s == S.SUPERSEDED for s in states):
                status = DeploymentStatus.SUPERSEDED
            elif any(s in (S.FAILED, S.ROLLED_BACK) for s in states):
                status = DeploymentStatus.FAILED
            else:
                status = DeploymentStatus.SUCCEEDED
            waves[wave] = {
                **waves[wave],
                "state": "failed" if bad else "done",
                "finished_at": _now_iso(),
            }
            won = (
                Deployment.objects.filter(pk=deployment.pk, current_wave=wave)
                .exclude(status=status)
                .update(status=status, waves=waves, finished_at=timezone.now())
            )
            if won:
                _audit(
                    AuditAction.DEPLOY_STATE,
                    deployment,
                    after={"status": status},
                    extra={"states": {s: states.count(s) for s in set(states)}},
                )
    return Deployment.objects.defer("document").get(pk=deployment_id)


def deployment_summary(deployment: Deployment) -> dict:
    """Counts of device states per wave, for the API and the dashboard."""
    per_wave: dict[int, dict[str, int]] = {}
    for wave, state in deployment.device_deployments.values_list("wave", "state"):
        counts = per_wave.setdefault(wave, {})
        counts[state] = counts.get(state, 0) + 1
    waves = []
    for w in deployment.waves:
        counts = per_wave.get(w["index"], {})
        waves.append(
            {
                **w,
                "states": counts,
                "done": sum(n for s, n in counts.items() if s in TERMINAL_STATES),
            }
        )
    return {"waves": waves}


# --- the sweeper -----------------------------------------------------------------------------


def sweep_stuck(*, now: datetime | None = None) -> int:
    """Fail device deployments stuck in flight beyond their time limit, saying why.

    A deployment whose worker vanished for good (and whose message is gone) would otherwise
    show `pushing` forever.
    """
    now = now or timezone.now()
    limit = _conf("DEPLOY_STUCK_SECONDS", settings.CELERY_TASK_TIME_LIMIT + 120)
    queued_limit = _conf("DEPLOY_QUEUED_STUCK_SECONDS", 3600)
    stuck = list(
        DeviceDeployment.objects.filter(
            Q(state__in=ACTIVE_STATES, updated_at__lt=now - timedelta(seconds=limit))
            | Q(state=S.QUEUED, updated_at__lt=now - timedelta(seconds=queued_limit))
        ).select_related("device", "deployment")
    )
    count = 0
    for dd in stuck:
        if dd.state == S.QUEUED and dd.wave > dd.deployment.current_wave:
            continue  # waiting for its wave, not stuck
        seconds = int((now - dd.updated_at).total_seconds())
        _move(
            dd,
            S.FAILED,
            "sweeper",
            error=f"stuck in {dd.state} for {seconds}s (limit {limit}s): "
            "the worker was lost or the task never ran",
        )
        Device.objects.filter(pk=dd.device_id, push_lease_owner__endswith=f":{dd.pk}").update(
            push_lease_owner=None, push_lease_until=None
        )
        deployment_refresh(deployment_id=dd.deployment_id)
        count += 1
    return count


# --- watching the fleet ------------------------------------------------------------------------


def enrolled_device_ids() -> list[int]:
    return list(
        Device.objects.exclude(agent_public_key="")
        .exclude(agent_cert_fingerprint="")
        .values_list("pk", flat=True)
    )


def status_poll(*, device_id: int) -> dict:
    """Ask one agent how it is; record online/offline, drift and counters; repair drift.

    Returns a small summary (for logs and tests).
    """
    device = Device.objects.get(pk=device_id)
    now = timezone.now()
    try:
        status = AgentClient.for_device(device, timeout=(3.05, 15)).status()
    except AgentError as exc:
        if device.status != AgentStatus.OFFLINE:
            Device.objects.filter(pk=device.pk).update(status=AgentStatus.OFFLINE)
            _audit(
                AuditAction.UPDATE,
                device,
                before={"status": device.status},
                after={"status": AgentStatus.OFFLINE},
                extra={"error": str(exc)[:500]},
            )
        return {"device": device.name, "status": AgentStatus.OFFLINE, "error": str(exc)}
    updates: dict[str, Any] = {"status": AgentStatus.ONLINE, "last_seen_at": now}
    facts = status.get("facts")
    if isinstance(facts, dict):
        updates["facts"] = {
            **facts,
            "agent_version": status.get("agent_version"),
            "backend": status.get("backend"),
            "boot_id": status.get("boot_id"),
        }
    applied = status.get("applied") or {}
    if applied.get("confirmed") and applied.get("hash"):
        updates["applied_hash"] = applied["hash"]
        updates["applied_version"] = int(applied.get("version") or 0)
    drift = status.get("drift") or {}
    drifted = bool(drift.get("drifted"))
    diff = str(drift.get("diff") or "")[:200_000]
    updates["drifted"] = drifted
    updates["drift_diff"] = diff if drifted else ""
    if device.status != AgentStatus.ONLINE:
        _audit(
            AuditAction.UPDATE,
            device,
            before={"status": device.status},
            after={"status": AgentStatus.ONLINE},
        )
    if drifted and (not device.drifted or diff != device.drift_diff):
        _audit(AuditAction.DRIFT_DETECTED, device, after={"drifted": True, "diff": diff[:20_000]})
    elif device.drifted and not drifted:
        _audit(AuditAction.UPDATE, device, before={"drifted": True}, after={"drifted": False})
    previous_boot = (device.facts or {}).get("boot_id")
    Device.objects.filter(pk=device.pk).update(**updates)
    counters = status.get("counters")
    ingested = 0
    if isinstance(counters, dict):
        reset = bool(
            previous_boot and status.get("boot_id") and previous_boot != status.get("boot_id")
        )
        ingested = counters_ingest(device=device, counters=counters, at=now, reset=reset)
    repair = None
    if drifted and device.auto_repair:
        repair = drift_repair(device=device)
    return {
        "device": device.name,
        "status": AgentStatus.ONLINE,
        "drifted": drifted,
        "counters": ingested,
        "repair": repair.pk if repair else None,
    }


def drift_repair(*, device: Device) -> Deployment | None:
    """Re-deploy a drifted device (itself a deployment, audited).

    None while a push to it is under way, or within the cooldown after the last repair:
    a repair that did not cure the drift must not turn into a deployment every poll.
    """
    busy = (
        DeviceDeployment.objects.filter(device=device).exclude(state__in=TERMINAL_STATES).exists()
    )
    cooldown = timezone.now() - timedelta(seconds=_conf("REPAIR_COOLDOWN_SECONDS", 300))
    recent = DeviceDeployment.objects.filter(
        device=device, deployment__trigger=DeploymentTrigger.REPAIR, created_at__gte=cooldown
    ).exists()
    if busy or recent:
        return None
    deployment = deploy_create(
        devices=[device.pk],
        trigger=DeploymentTrigger.REPAIR,
        reason="automatic repair of drift found by the status poll",
    )
    _audit(AuditAction.DRIFT_REPAIRED, device, extra={"deployment": deployment.pk})
    return deployment


def counters_ingest(*, device: Device, counters: dict, at: datetime, reset: bool = False) -> int:
    """Add the agent's raw per-rule counters to the stored totals.

    Totals grow by raw − last_raw; a raw value below the last one (chain rewritten, agent
    or host restarted) or `reset` (the host rebooted) means the kernel counted from zero
    again, so the whole raw value is new traffic. A reset therefore never looks like zero
    traffic, and never subtracts.
    """
    existing = {str(c.rule_uuid): c for c in RuleCounter.objects.filter(device=device)}
    new: list[RuleCounter] = []
    changed: list[RuleCounter] = []
    for key, value in counters.items():
        try:
            rule_uuid = str(uuid.UUID(str(key)))
            packets = int(value.get("packets") or 0)
            nbytes = int(value.get("bytes") or 0)
        except (ValueError, TypeError, AttributeError):
            log.warning("device %s: ignoring malformed counter %r", device.name, key)
            continue
        if packets < 0 or nbytes < 0:
            continue
        counter = existing.get(rule_uuid)
        if counter is None:
            counter = RuleCounter(device=device, rule_uuid=rule_uuid)
            new.append(counter)
        elif counter.last_raw_packets == packets and counter.last_raw_bytes == nbytes and not reset:
            continue
        else:
            changed.append(counter)
        was_reset = reset or packets < counter.last_raw_packets or nbytes < counter.last_raw_bytes
        grew_p = packets if was_reset else packets - counter.last_raw_packets
        grew_b = nbytes if was_reset else nbytes - counter.last_raw_bytes
        counter.packets += grew_p
        counter.bytes += grew_b
        if grew_p > 0:
            counter.last_hit_at = at
        counter.last_raw_packets, counter.last_raw_bytes = packets, nbytes
    with transaction.atomic():
        RuleCounter.objects.bulk_create(new, ignore_conflicts=True)
        if changed:
            RuleCounter.objects.bulk_update(
                changed,
                [
                    "packets",
                    "bytes",
                    "last_hit_at",
                    "last_raw_packets",
                    "last_raw_bytes",
                    "updated_at",
                ],
            )
    return len(new) + len(changed)


# --- enrollment --------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class IssuedToken:
    token: str
    record: EnrollmentToken


@transaction.atomic
def enrollment_token_create(
    *, device: Device, user: Any = None, ttl: int | None = None
) -> IssuedToken:
    """A new one-time token for `device`; the clear text exists only in the return value."""
    ttl = ttl if ttl is not None else _conf("ENROLL_TOKEN_TTL", 3600)
    if not 60 <= ttl <= 30 * 86400:
        raise ValidationError({"ttl": ["must be 60 s .. 30 days"]})
    token = "rpt-enroll-" + secrets.token_urlsafe(32)
    record = EnrollmentToken.objects.create(
        device=device,
        digest=_token_hash(token),
        prefix=token[11:19],
        created_by=user if getattr(user, "is_authenticated", False) else None,
        expires_at=timezone.now() + timedelta(seconds=ttl),
    )
    return IssuedToken(token, record)


def enrollment_token_lookup(token: str) -> EnrollmentToken | None:
    """The usable (unused, unexpired) token record for a clear-text token, or None."""
    if not isinstance(token, str) or not token.startswith("rpt-enroll-") or len(token) > 100:
        return None
    return (
        EnrollmentToken.objects.select_related("device")
        .filter(digest=_token_hash(token), used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


def agent_enroll(
    *, token: str, public_key: str, cert_fingerprint: str, listen_port: int, facts: dict | None
) -> dict:
    """Bind an agent's key and certificate to the token's device; returns the console key.

    The token is spent with a conditional UPDATE, so two agents racing with one token
    cannot both enroll.
    """
    errors: dict[str, list[str]] = {}
    try:
        protocol.load_public_key_b64(public_key)
    except (ValueError, TypeError):
        errors["public_key"] = ["must be base64 of a raw 32-byte Ed25519 public key"]
    fingerprint = str(cert_fingerprint or "").replace(":", "").lower()
    if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
        errors["cert_fingerprint"] = ["must be the SHA-256 hex of the DER certificate"]
    if (
        isinstance(listen_port, bool)
        or not isinstance(listen_port, int)
        or not 0 < listen_port <= 65535
    ):
        errors["listen_port"] = ["must be 1..65535"]
    if facts is not None and not isinstance(facts, dict):
        errors["facts"] = ["must be an object"]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        record = enrollment_token_lookup(token)
        if record is None:
            raise ValidationError({"token": ["invalid, expired or already used"]})
        spent = EnrollmentToken.objects.filter(pk=record.pk, used_at__isnull=True).update(
            used_at=timezone.now()
        )
        if not spent:
            raise ValidationError({"token": ["invalid, expired or already used"]})
        device = record.device
        _audit(
            AuditAction.UPDATE,
            device,
            after={"enrolled": True, "cert_fingerprint": fingerprint},
            extra={"token": record.prefix, "hostname": (facts or {}).get("hostname")},
        )
        device.agent_public_key = public_key
        device.agent_cert_fingerprint = fingerprint
        device.agent_port = listen_port
        device.facts = dict(facts or {})
        device.enrolled_at = timezone.now()
        device.status = AgentStatus.UNKNOWN
        Device.objects.filter(pk=device.pk).update(
            agent_public_key=device.agent_public_key,
            agent_cert_fingerprint=fingerprint,
            agent_port=listen_port,
            facts=device.facts,
            enrolled_at=device.enrolled_at,
            status=device.status,
            last_updated=timezone.now(),
        )
    return {
        "device": device.name,
        "device_id": device.pk,
        "console_public_key": console_public_key_b64(),
    }
