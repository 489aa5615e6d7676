"""An agent that hangs mid-rollout — a `rampart-agent serve` stopped with SIGSTOP (the TLS
handshake never completes), or an agent whose apply never returns (the request was read,
no answer comes) — fails its device deployment with a reason within the bound; the other
devices of the deployment are not held up."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from agents.models import DeviceDeployment
from rules.models import Device
from tests.faults.stack import (
    BOUND,
    REDIS_URL,
    fault_stack,
    fleet,
    redis_up,
    report,
    slow_agents,
    wait_terminal,
)
from tests.support.deploy import free_port, local_agent, serve_agent_cmd, stop_process, wait_ready

pytestmark = [
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


def test_hung_agent_fails_with_reason_and_the_rest_continue(
    tmp_path, fault_db, console_key, django_db_blocker, capsys
):
    if not redis_up(REDIS_URL):
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    port = free_port()
    state = tmp_path / "hung-agent"
    agent = subprocess.Popen(
        serve_agent_cmd(state, f"127.0.0.1:{port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        wait_ready(agent)
        with (
            slow_agents(tmp_path, console_key, 4) as agents,
            fault_stack(tmp_path, fault_db, REDIS_URL, django_db_blocker) as console,
        ):
            devices = fleet("hang", agents)
            hung = Device.objects.create(name="hang-stopped", address="127.0.0.1", agent_port=port)
            hung.groups.add(Device.objects.get(pk=devices[0]).groups.get())
            console.enroll(hung.pk, state, port, console.api_url)
            os.kill(agent.pid, signal.SIGSTOP)  # accepts connections, never answers
            stopped = time.monotonic()
            deployment = console.deploy(devices=[hung.pk, *devices], confirm_timeout=5)
            took = wait_terminal(deployment, stopped, BOUND)
            rows = {
                r["device_id"]: r
                for r in DeviceDeployment.objects.filter(deployment_id=deployment).values(
                    "device_id", "state", "error", "finished_at"
                )
            }
    finally:
        os.kill(agent.pid, signal.SIGCONT)
        stop_process(agent)
    others = [rows[d] for d in devices]
    report(
        capsys,
        f"agent SIGSTOP: the hung device ended {rows[hung.pk]['state']} {took:.1f}s after the "
        f"stop (bound {BOUND}s): {rows[hung.pk]['error'][:120]!r}; "
        f"{sum(r['state'] == 'confirmed' for r in others)}/{len(others)} others confirmed",
    )
    assert rows[hung.pk]["state"] == "failed" and rows[hung.pk]["error"], rows[hung.pk]
    assert all(r["state"] == "confirmed" for r in others), others
    # the others did not wait for the hung one
    assert max(r["finished_at"] for r in others) < rows[hung.pk]["finished_at"]


def test_agent_whose_apply_never_returns_fails_at_the_soft_time_limit(
    tmp_path, fault_db, console_key, django_db_blocker, capsys
):
    if not redis_up(REDIS_URL):
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    release = threading.Event()

    def never(family: str, payload: str) -> None:
        release.wait(120)  # the apply holds the request (and the console) until released
        return None

    try:
        with (
            local_agent(tmp_path / "stuck-agent", console_key, fail_on=never) as stuck,
            slow_agents(tmp_path, console_key, 4) as agents,
            fault_stack(tmp_path, fault_db, REDIS_URL, django_db_blocker) as console,
        ):
            devices = fleet("never", [stuck, *agents])
            started = time.monotonic()
            deployment = console.deploy(devices=devices, confirm_timeout=5)
            took = wait_terminal(deployment, started, BOUND)
            rows = list(
                DeviceDeployment.objects.filter(deployment_id=deployment)
                .order_by("device_id")
                .values("device_id", "state", "error", "finished_at")
            )
            release.set()
    finally:
        release.set()
    hung, others = rows[0], rows[1:]
    report(
        capsys,
        f"agent apply never returns: the device ended {hung['state']} {took:.1f}s after the "
        f"deploy (bound {BOUND}s): {hung['error'][:120]!r}; "
        f"{sum(r['state'] == 'confirmed' for r in others)}/{len(others)} others confirmed",
    )
    assert hung["state"] == "failed" and "time limit" in hung["error"], hung
    assert all(r["state"] == "confirmed" for r in others), others
    assert max(r["finished_at"] for r in others) < hung["finished_at"]
