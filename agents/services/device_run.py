"""One device's part of a deployment: compile → check → push → confirm, under its lease.

Safe to run again for the same device deployment (a task redelivered after a crash): a
terminal state is left alone, the version is kept, and an agent that already holds this
version is recognised instead of refusing it as a replay; a 409 is matched to our own push by
version and bundle hash, and another bundle's use of the version is passed by a higher one.
Errors worth retrying raise RetryLater to the task, which retries with backoff. A run stamps
its claim first, so the sweeper can tell a lost message from a live run.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import DateTimeField, Max, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.choices import TERMINAL_STATES
from agents.client import (
    CONNECT_TIMEOUT,
    AgentClient,
    AgentError,
    AgentIdentityError,
    AgentRefused,
    AgentUnreachable,
)
from agents.compile import compile_for_device, deployment_probes
from agents.models import DeviceDeployment
from agents.services.counters import counter_reset_ingest
from agents.services.lease import lease_acquire, lease_release, lease_release_query
from agents.services.rollout import deployment_refresh
from agents.services.transitions import S, move, now_iso
from agents.services.write_funnel import committed, one_commit
from compiler import CompilerError
from rules.models import Device

# An apply unanswered after this long: ask the agent (status, fresh connection) what it is
# waiting for, and note it on the device deployment.
WATCH_APPLY_AFTER = 1.0


class RetryLater(Exception):
    """Raised to the task when the attempt should be repeated later (with backoff)."""


class DeviceBusy(RetryLater):
    """Another push holds the device's lease."""


def _next_version(dd: DeviceDeployment, at_least: int = 0) -> int:
    """A bundle version greater than anything this device has seen from us or reported."""
    applied = Device.objects.values_list("applied_version", flat=True).get(pk=dd.device_id)
    highest = (
        DeviceDeployment.objects.filter(device_id=dd.device_id).aggregate(v=Max("version"))["v"]
        or 0
    )
    return max(highest, applied, at_least) + 1


def _load(device_deployment_id: int) -> DeviceDeployment:
    """The device deployment with its device and deployment (not the document), and the
    highest version any deployment gave the device (`highest_version`): one query."""
    highest = (
        DeviceDeployment.objects.filter(device_id=OuterRef("device_id"))
        .order_by()
        .values("device_id")
        .annotate(v=Max("version"))
        .values("v")
    )
    return (
        DeviceDeployment.objects.select_related("device", "deployment")
        .defer("deployment__document")
        .annotate(highest_version=Subquery(highest))
        .get(pk=device_deployment_id)
    )


def device_deployment_run(
    *, device_deployment_id: int, final_attempt: bool = False, refresh: bool = True
) -> str:
    """Compile, check, push and confirm one device's bundle; returns the state reached.

    Raises RetryLater when the attempt should be repeated; on `final_attempt` a
    retryable failure is recorded as `failed` instead. `refresh=False`: the caller moves
    the rollout on itself (a batch, once for all its devices).

    Four commits on the way of a push that goes well (the claim and the lease; compiling
    and pushing; applied; confirmed with the device's new bundle and the lease given back),
    each state still audited, and no read of the policy document: it is parsed once per
    process and devices with the same policy share one compile (agents/device_policy.py).
    In a batch thread those commits are shared with the batch's other devices
    (agents/services/write_funnel.py).
    """
    claimed = committed(partial(_claim_and_load, device_deployment_id))
    assert claimed is not None
    state, device_id, dd, planned = claimed
    if dd is None:
        if state in TERMINAL_STATES:
            return state
        name = Device.objects.values_list("name", flat=True).get(pk=device_id)
        raise DeviceBusy(f"another push to {name} is in flight")
    state = ""
    try:
        if dd.state in TERMINAL_STATES:  # finished by a duplicate delivery meanwhile
            return dd.state
        dd.attempts += 1
        max_attempts = settings.RAMPART.get("DEPLOY_MAX_ATTEMPTS", 5)
        state = _run_locked(dd, planned, final_attempt=final_attempt or dd.attempts >= max_attempts)
    finally:
        if state not in _RELEASED:  # those gave the lease back with their last write
            lease_release(dd)
    if refresh and state in TERMINAL_STATES:
        with transaction.atomic():  # its reads in one transaction
            deployment_refresh(deployment_id=dd.deployment_id)
    return state


def _claim_and_load(
    device_deployment_id: int,
) -> tuple[str, int, DeviceDeployment | None, int | None]:
    """Claim, lease and the next version in one transaction: (state, device id, the device
    deployment read under the lease or None when another push holds it, planned version).
    A finished one is left at once. Changes nothing in Python: it can run again."""
    with transaction.atomic(savepoint=False):
        if not _claim(device_deployment_id):  # finished (or gone): left at once
            state, device_id = DeviceDeployment.objects.values_list("state", "device_id").get(
                pk=device_deployment_id
            )
            return state, device_id, None, None
        of_claim = DeviceDeployment.objects.filter(pk=device_deployment_id).values("device_id")
        claim = DeviceDeployment(pk=device_deployment_id)
        if not lease_acquire(claim, device=Subquery(of_claim)):
            return "", int(of_claim.get()["device_id"]), None, None
        # read under the lease: a duplicate delivery may have finished it
        dd = _load(device_deployment_id)
        planned = None
        if not dd.version:
            planned = max(dd.highest_version or 0, dd.device.applied_version) + 1
        return dd.state, dd.device_id, dd, planned


def _claim(device_deployment_id: int) -> bool:
    """Stamp a worker's claim (the first) and heartbeat on an unfinished device deployment:
    the sweeper's proof that the task's message was delivered and that a run (or its wait
    for a busy device) is alive. False when it is finished."""
    now = timezone.now()
    return bool(
        DeviceDeployment.objects.filter(pk=device_deployment_id)
        .exclude(state__in=TERMINAL_STATES)
        .update(heartbeat_at=now, claimed_at=Coalesce("claimed_at", Value(now, DateTimeField())))
    )


def device_deployment_fail(*, device_deployment_id: int, reason: str) -> None:
    """Record a failure the task layer saw (time limit, crash) if nothing else did."""
    dd = DeviceDeployment.objects.select_related("device").get(pk=device_deployment_id)
    if dd.state not in TERMINAL_STATES:
        move(dd, S.FAILED, "task failed", error=reason)
        deployment_refresh(deployment_id=dd.deployment_id)


def _run_locked(dd: DeviceDeployment, planned: int | None, *, final_attempt: bool) -> str:
    try:
        started = timezone.now()
        bundle = _compile(dd, started)
        if bundle is None:
            return dd.state
        if not dd.version:
            dd.version = planned or _next_version(dd)
        client = AgentClient.for_device(dd.device)
        with one_commit():  # both steps and their audit entries: one commit
            move(dd, S.COMPILING, f"attempt {dd.attempts}", at=started)
            move(dd, S.PUSHING, f"version {dd.version}")
        answer = _push(dd, client, bundle)
        if answer is None:
            return dd.state
        return _after_apply(dd, client, answer)
    except (AgentUnreachable, AgentRefused) as exc:
        if isinstance(exc, AgentRefused) and not exc.retryable:
            return _refused(dd, exc)
        return _unreachable(dd, exc, final_attempt=final_attempt)
    except AgentIdentityError as exc:
        move(dd, S.FAILED, "agent identity", error=str(exc))
        return dd.state
    except SoftTimeLimitExceeded:
        move(dd, S.FAILED, "time limit", error=f"task time limit exceeded while {dd.state}")
        return dd.state


def _compile(dd: DeviceDeployment, started: datetime) -> dict | None:
    """The bundle to push, or None after recording why there is none (never retried).

    Compiled as of `started`, the stamp its compiling step gets (written with the next
    step, or with the failure): `target=deployed` compiles it again as of then."""
    try:
        compiled = compile_for_device(
            dd.device, dd.deployment, now=started, recorded=dd.settings or None
        )
    except CompilerError as exc:
        _compile_failed(
            dd,
            started,
            "compile error",
            error=f"policy does not compile: {exc}",
            agent_response={"errors": [e.to_dict() for e in exc.errors][:50]},
        )
        return None
    except ValidationError as exc:
        _compile_failed(dd, started, "invalid request", error="; ".join(exc.messages))
        return None
    dd.bundle_hash = compiled.hash
    if compiled.failed_assertions:
        _compile_failed(
            dd,
            started,
            "assertion failed",
            error="assertion failed, not pushed: " + "; ".join(compiled.failed_assertions),
        )
        return None
    return compiled.bundle


def _compile_failed(dd: DeviceDeployment, started: datetime, note: str, **fields: Any) -> None:
    with one_commit():
        move(dd, S.COMPILING, f"attempt {dd.attempts}", at=started)
        move(dd, S.FAILED, note, **fields)


def _unreachable(dd: DeviceDeployment, exc: AgentError, *, final_attempt: bool) -> str:
    """Give up on the last attempt; otherwise note the attempt and raise RetryLater."""
    if final_attempt:
        move(
            dd,
            S.FAILED,
            "gave up",
            error=f"agent unreachable after {dd.attempts} attempts: {exc}",
        )
        return dd.state
    dd.error = f"attempt {dd.attempts}: {exc}"
    dd.transitions = [
        *dd.transitions,
        {"state": dd.state, "at": now_iso(), "note": f"retrying: {exc}"[:500]},
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


def _refused(dd: DeviceDeployment, exc: AgentRefused) -> str:
    result = exc.body.get("result")
    state = S.ROLLED_BACK if result == "rolled_back" else S.FAILED
    move(
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
        "probes": deployment_probes(dd.device, dd.deployment),
    }
    for _ in range(2):
        try:
            return _apply_watched(dd, client, request)
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
    move(dd, S.FAILED, "version conflict", error="agent refused every version offered (409)")
    return None


def _apply_watched(dd: DeviceDeployment, client: AgentClient, request: dict) -> dict:
    """`client.apply`, noting on the device deployment what the agent says it waits for
    (another program's xtables lock) while its answer is awaited. The HTTP call runs in a
    thread; the database is only touched from this one."""
    watcher = AgentClient.for_device(dd.device, timeout=(CONNECT_TIMEOUT, 5))
    seen = ""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-apply")
    future = pool.submit(client.apply, version=dd.version, **request)
    try:
        while True:
            try:
                return future.result(timeout=WATCH_APPLY_AFTER)
            except FutureTimeout:
                pass
            try:
                activity = str(watcher.status().get("activity") or "")
            except AgentError:
                continue
            if activity and activity != seen and not future.done():
                seen = activity
                _note(dd, f"agent: {activity}")
    finally:
        # never wait for the call here: on the soft time limit (an agent that hangs) the
        # failure is recorded now; the abandoned call ends with its read timeout
        pool.shutdown(wait=False)


def _note(dd: DeviceDeployment, note: str) -> None:
    """A note in the transitions without a change of state (shown with them)."""
    dd.transitions = [*dd.transitions, {"state": dd.state, "at": now_iso(), "note": note[:500]}]
    DeviceDeployment.objects.filter(pk=dd.pk).update(
        transitions=dd.transitions, updated_at=timezone.now()
    )


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
    # a rollback at this version is ours only if it rolled back our bundle: another bundle
    # (a local break-glass apply, another console) may have used the same version number
    rollback = status.get("last_rollback") or {}
    if rollback.get("version") == dd.version and rollback.get("hash") == dd.bundle_hash:
        return {
            "result": "rolled_back",
            "version": dd.version,
            "error": rollback.get("reason"),
            "recovered": True,
        }
    return None


def _after_apply(dd: DeviceDeployment, client: AgentClient, answer: dict) -> str:
    """Record the agent's apply answer; confirm it where the deployment asks for that."""
    if isinstance(answer.get("counter_reset"), dict):  # the counts the rewrite took
        counter_reset_ingest(device=dd.device, reset=answer["counter_reset"], at=timezone.now())
    result = answer.get("result")
    if result == "rolled_back":
        move(
            dd,
            S.ROLLED_BACK,
            "agent rolled back",
            agent_response=answer,
            error=str(answer.get("error") or ""),
        )
        return dd.state
    if result == "unchanged":
        with one_commit():
            move(dd, S.UNCHANGED, "bundle already applied", agent_response=answer, error="")
            _device_applied(dd)
        return dd.state
    if result != "applied":
        move(
            dd,
            S.FAILED,
            "unexpected answer",
            agent_response=answer,
            error=f"unexpected agent answer {result!r}",
        )
        return dd.state
    note = f"apply_ms={answer.get('apply_ms')}"
    if answer.get("note"):
        note += f"; {answer['note']}"
    if dd.deployment.confirm_timeout <= 0 or answer.get("confirmed"):
        with one_commit():
            move(dd, S.APPLIED, note, agent_response=answer, error="")
            move(
                dd,
                S.CONFIRMED,
                "no confirm needed" if dd.deployment.confirm_timeout <= 0 else "already confirmed",
            )
            _device_applied(dd)
        return dd.state
    # written before the confirm: a worker lost now leaves a device deployment that says
    # the agent holds the bundle (and a redelivered task recognises it)
    move(dd, S.APPLIED, note, agent_response=answer, error="")
    return _confirm(dd, client, answer)


def _confirm(dd: DeviceDeployment, client: AgentClient, answer: dict) -> str:
    """Send the commit-confirm; keep trying until the agent's deadline, then look."""
    deadline = time.monotonic() + dd.deployment.confirm_timeout
    delay = 0.2
    last_error = ""
    while True:
        try:
            # a connect attempt never runs past the window: a policy cutting the console off
            # is reported when the window ends, as the agent rolls it back
            connect = min(CONNECT_TIMEOUT, max(0.2, deadline - time.monotonic()))
            confirmed = client.confirm(dd.version, connect_timeout=connect)
            with one_commit():
                move(dd, S.CONFIRMED, "", agent_response={**answer, "confirm": confirmed})
                _device_applied(dd)
            return dd.state
        except AgentRefused as exc:
            if exc.body.get("result") == "stale_connection":
                # the agent took this connection for one opened before the apply (each
                # confirm opens its own: not expected); another fresh one is tried
                last_error = str(exc)
            elif exc.status == 409:
                move(
                    dd,
                    S.ROLLED_BACK,
                    "confirm refused",
                    agent_response={**answer, "confirm": exc.body},
                    error=str(exc.body.get("error") or "the agent had already rolled back"),
                )
                return dd.state
            elif not exc.retryable:
                raise
            else:
                last_error = str(exc)
        except AgentUnreachable as exc:
            last_error = str(exc)
        if time.monotonic() >= deadline:
            break
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 5)
    return _confirm_missed(dd, client, last_error)


def _confirm_missed(dd: DeviceDeployment, client: AgentClient, last_error: str) -> str:
    """The confirm never got through before the deadline: the agent rolls back by itself,
    unless the status shows the confirm did arrive after all."""
    agent_says = ""
    try:
        status = client.status()
        held = _agent_holds(status, dd)
        if held and held.get("result") == "applied" and held.get("confirmed"):
            with one_commit():
                move(dd, S.CONFIRMED, "confirm found applied after retries")
                _device_applied(dd)
            return dd.state
        if held and held.get("result") == "rolled_back":
            agent_says = f"; agent: {held.get('error')}"
    except AgentError:
        pass
    move(
        dd,
        S.ROLLED_BACK,
        "confirm timed out",
        error=f"confirm did not reach the agent within {dd.deployment.confirm_timeout}s "
        f"on a new connection ({last_error}): the policy cuts the console off; the agent "
        f"rolled back to its last confirmed policy{agent_says}",
    )
    return dd.state


# states whose last write gave the device's push lease back (_device_applied)
_RELEASED = (S.CONFIRMED, S.UNCHANGED)


def _device_applied(dd: DeviceDeployment) -> None:
    """The device now runs this bundle, and so it has no drift; its push is over (the
    lease is given back in the same transaction as the state that says so)."""
    committed(partial(_device_write, dd, dd.bundle_hash, dd.version or 0))


def _device_write(dd: DeviceDeployment, bundle_hash: str, version: int) -> None:
    Device.objects.filter(pk=dd.device_id).update(
        applied_hash=bundle_hash,
        applied_version=version,
        drifted=False,
        drift_diff="",
        **lease_release_query(dd),
    )
