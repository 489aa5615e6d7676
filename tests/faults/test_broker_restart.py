"""Redis restarted WITHOUT persistence while 20 device deployments are queued: the queued
messages are gone, yet every device deployment ends within the bound — the sweeper sees
work no worker took and sends it again; runs in flight finish on their own."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agents.models import DeviceDeployment
from tests.faults.stack import (
    BOUND,
    fault_stack,
    fleet,
    report,
    slow_agents,
    states,
    wait_state,
    wait_terminal,
)
from tests.support.deploy import free_port, stop_process, wait_for

pytestmark = [
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]
DEVICES = 20
REDIS_SERVER = shutil.which("redis-server")


@contextmanager
def private_redis(
    tmp: Path,
) -> Iterator[tuple[str, list[subprocess.Popen], Callable[[], None]]]:
    """A redis-server of this test on a free port, without persistence: its URL, the
    processes started so far (the last one runs) and a function starting the next."""
    port = free_port()
    cmd = [REDIS_SERVER or "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    cmd += ["--save", "", "--appendonly", "no", "--dir", str(tmp)]
    procs: list[subprocess.Popen] = []

    def start() -> None:
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
        )
        wait_for(lambda: _pong(port), 10, 0.1, "redis-server")

    try:
        start()
        yield f"redis://127.0.0.1:{port}/0", procs, start
    finally:
        for proc in procs:
            stop_process(proc)


def _pong(port: int) -> bool:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() == "PONG"


@pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server")
def test_redis_restart_without_persistence_ends_every_device_within_the_bound(
    tmp_path, fault_db, console_key, django_db_blocker, capsys
):
    with (
        private_redis(tmp_path) as (url, procs, restart),
        slow_agents(tmp_path, console_key, DEVICES) as agents,
        # batches of 2: most of the wave waits in the broker as messages when it dies (one
        # batch of 25 would be all in the worker's hands, and nothing would be lost)
        fault_stack(
            tmp_path, fault_db, url, django_db_blocker, RAMPART_DEPLOY_BATCH="2"
        ) as console,
    ):
        devices = fleet("redis", agents)
        deployment = console.deploy(devices=devices, confirm_timeout=0)
        wait_state(deployment, lambda s: "pushing" in s.values(), 30)
        procs[-1].kill()  # no persistence: every queued and unacked message is gone
        procs[-1].wait(timeout=10)
        lost_at = time.monotonic()
        at_restart = states(deployment)
        restart()
        took = wait_terminal(deployment, lost_at, BOUND)
        rows = list(
            DeviceDeployment.objects.filter(deployment_id=deployment).values(
                "state", "error", "requeues"
            )
        )
    queued = sum(s == "queued" for s in at_restart.values())
    ended = [r["state"] for r in rows]
    report(
        capsys,
        f"Redis restart without persistence: {DEVICES} devices ({queued} queued at the "
        f"restart): all terminal {took:.1f}s after it (bound {BOUND}s); "
        f"{ended.count('confirmed')} confirmed, {ended.count('failed')} failed, "
        f"{sum(r['requeues'] for r in rows)} sent again",
    )
    assert queued >= 1, at_restart
    assert sum(r["requeues"] for r in rows) >= 1  # lost messages were sent again
    assert all(r["state"] == "confirmed" or r["error"] for r in rows), rows
