"""A worker killed with -9 while 20 device deployments are queued: every one ends, with a
reason, within the bound (2 x the task time limit) once a worker is back. The runs it had
in flight are failed by the sweeper (their worker is provably gone); the queue goes on."""

from __future__ import annotations

import time

import pytest

from agents.models import DeviceDeployment
from tests.faults.stack import (
    BOUND,
    REDIS_URL,
    fault_stack,
    fleet,
    redis_up,
    report,
    slow_agents,
    states,
    wait_state,
    wait_terminal,
)

pytestmark = [
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]
DEVICES = 20


def test_worker_kill9_with_20_queued_ends_every_device_within_the_bound(
    tmp_path, fault_db, console_key, django_db_blocker, capsys
):
    if not redis_up(REDIS_URL):
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    with (
        slow_agents(tmp_path, console_key, DEVICES) as agents,
        fault_stack(tmp_path, fault_db, REDIS_URL, django_db_blocker) as console,
    ):
        devices = fleet("kill9", agents)
        deployment = console.deploy(devices=devices, confirm_timeout=0)
        wait_state(deployment, lambda s: "pushing" in s.values(), 30)
        console.worker.kill9()
        killed = time.monotonic()
        at_kill = states(deployment)
        console.start_worker()
        took = wait_terminal(deployment, killed, BOUND)
        rows = list(
            DeviceDeployment.objects.filter(deployment_id=deployment).values(
                "state", "error", "requeues"
            )
        )
    in_flight = sum(s in ("compiling", "pushing", "applied") for s in at_kill.values())
    queued = sum(s == "queued" for s in at_kill.values())
    ended = [r["state"] for r in rows]
    report(
        capsys,
        f"worker kill -9: {DEVICES} devices ({in_flight} in flight, {queued} queued at the "
        f"kill): all terminal {took:.1f}s after it (bound {BOUND}s); "
        f"{ended.count('confirmed')} confirmed, {ended.count('failed')} failed, "
        f"{sum(r['requeues'] for r in rows)} sent again",
    )
    assert in_flight >= 1 and queued >= 1, at_kill
    failed = [r for r in rows if r["state"] != "confirmed"]
    assert all(r["state"] == "failed" and r["error"] for r in failed), failed
    assert all("the worker was lost" in r["error"] for r in failed), failed
    assert ended.count("confirmed") >= queued  # the queue was not lost with the worker
    # the runs in flight were ended by the sweeper, not by the broker's redelivery (V = 92 s)
    assert ended.count("failed") == in_flight
