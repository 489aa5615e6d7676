"""Deploys that would lock the console out, against a real agent in an rpt_ namespace.

The console (this process, the same device-run code the worker runs) reaches the agent
over a veth from the root namespace, from an address its management sources do not name,
as behind a NAT. A policy that drops the console's *new* connections must roll back: the
confirm travels on a fresh connection (the agent refuses one opened before the apply), so
the kept-alive connection of the apply, let through by the stateful rules, proves nothing.
Also: an apply that waits for another program's xtables lock ends confirmed, and says so.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents import services
from agents.client import READ_TIMEOUT, AgentClient, console_public_key_b64
from agents.services.polling import status_poll
from rampart_agent import protocol
from rampart_agent.state import StateDir
from rules.choices import AgentStatus
from tests.agents.helpers import run_all
from tests.support.deploy import make_device, make_policy, serve_agent_cmd, wait_ready
from tests.support.netns import Netns, namespace, needs_netns, sh, unique

pytestmark = [
    *needs_netns,
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]

CONFIRM = 5  # seconds: the confirm window of these deployments
NAT_BLOCK = "198.18.254.0/24"  # the declared management source; the console is not in it


@dataclass
class NsAgent:
    ns: Netns
    console_addr: str
    addr: str
    state: Path
    log: Path
    proc: subprocess.Popen | None = None

    def start(self, backend: str, **env: str) -> None:
        cmd = serve_agent_cmd(self.state, f"{self.addr}:8745", backend, confirm_timeout=CONFIRM)
        cmd[1:1] = [f"{k}={v}" for k, v in env.items()]  # after `env`
        self.proc = self.ns.popen(
            *cmd, stdout=subprocess.PIPE, stderr=self.log.open("ab"), text=True
        )
        wait_ready(self.proc)

    def new_connection_works(self) -> bool:
        try:
            socket.create_connection((self.addr, 8745), timeout=1).close()
            return True
        except OSError:
            return False


@contextmanager
def agent_namespace(tmp_path: Path) -> Iterator[NsAgent]:
    """A namespace for the agent, joined to the root namespace (the console) by a veth.

    Addresses from 198.19.251-254.x/30 (the deploy worker tests use 198.19.1-250.x)."""
    net, n = f"198.19.{251 + os.getpid() % 4}", os.getpid() // 4 % 60
    console_addr, addr = f"{net}.{4 * n + 1}", f"{net}.{4 * n + 2}"
    state = StateDir(tmp_path / "agent")
    state.ensure_identity("ns-agent")
    state.set_console_key(console_public_key_b64())
    with namespace("lko") as ns:
        agent = NsAgent(ns, console_addr, addr, state.path, tmp_path / "agent.log")
        root_if, ns_if = unique("lr"), unique("ln")
        sh("ip", "link", "add", root_if, "type", "veth", "peer", "name", ns_if, "netns", ns.name)
        try:
            sh("ip", "addr", "add", f"{console_addr}/30", "dev", root_if)
            sh("ip", "link", "set", root_if, "up")
            ns.run("ip", "addr", "add", f"{addr}/30", "dev", ns_if)
            ns.run("ip", "link", "set", ns_if, "up")
            yield agent
        finally:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.terminate()
                agent.proc.wait(timeout=10)
            sh("ip", "link", "delete", root_if, check=False)


def ns_device(agent: NsAgent, **fields):
    """A device whose rule set allows tcp 80 from the NAT block; enrolled with the agent."""
    _, group = make_policy("web", ports=(80,), sources=(NAT_BLOCK,))
    state = StateDir(agent.state)
    return make_device(
        "ns-web",
        group=group,
        address=agent.addr,
        port=8745,
        agent_public_key=protocol.public_key_b64(state.ensure_identity()),
        agent_cert_fingerprint=state.cert_fingerprint(),
        management_sources=[agent.console_addr],
        **fields,
    )


def deploy(device) -> tuple[str, object]:
    deployment = services.deploy_create(devices=[device.pk], confirm_timeout=CONFIRM)
    [state] = run_all(deployment)
    return state, deployment.device_deployments.get()


@pytest.mark.parametrize("stateful", [True, False], ids=["new-connections-cut", "all-cut"])
def test_policy_cutting_the_console_off_is_rolled_back(stateful, tmp_path):
    with agent_namespace(tmp_path) as agent:
        agent.start("nft")
        device = ns_device(agent, stateful=stateful)
        state, dd = deploy(device)  # the console is a management source: fine
        assert state == "confirmed", dd.error

        # behind a NAT: the console's real address is not the declared management source
        device.management_sources = [NAT_BLOCK]
        device.save()
        state, dd = deploy(device)
        took = (dd.finished_at - dd.applied_at).total_seconds()
        print(f"stateful={stateful}: apply -> {state} in {took:.2f} s")
        assert state == "rolled_back", dd.transitions
        assert [t["state"] for t in dd.transitions][-2:] == ["applied", "rolled_back"]
        assert "on a new connection" in dd.error and "cuts the console off" in dd.error
        assert "no confirm from the console before the deadline" in dd.error, dd.error
        assert CONFIRM - 1 < took < CONFIRM + 2.5
        assert agent.new_connection_works()  # the agent rolled back: new connections pass
        status = AgentClient.for_device(device).status()
        assert status["applied"]["version"] == 1 and status["last_rollback"]["version"] == 2
        assert status_poll(device_id=device.pk)["status"] == AgentStatus.ONLINE
        assert "Traceback" not in agent.log.read_text()


def test_a_held_xtables_lock_is_waited_for_and_said(tmp_path):
    assert READ_TIMEOUT > protocol.XTABLES_WAIT_SECONDS  # the console outwaits the agent
    lock = tmp_path / "xtables.lock"  # the agent's own: never the host's /run/xtables.lock
    with agent_namespace(tmp_path) as agent:
        agent.start("legacy", XTABLES_LOCKFILE=str(lock))
        device = ns_device(agent)
        assert deploy(device)[0] == "confirmed"

        holder = agent.ns.popen("env", f"XTABLES_LOCKFILE={lock}", "flock", str(lock), "sleep", "4")
        deadline = time.monotonic() + 5
        while sh("flock", "-n", str(lock), "true", check=False).returncode == 0:
            assert time.monotonic() < deadline, "flock did not take the lock"
            time.sleep(0.01)
        device.management_sources = [agent.console_addr, NAT_BLOCK]  # a real change
        device.save()
        t0 = time.monotonic()
        state, dd = deploy(device)
        took = time.monotonic() - t0
        holder.wait(timeout=10)

        assert state == "confirmed", (dd.error, dd.transitions)
        notes = [(t["state"], t.get("note", "")) for t in dd.transitions]
        print(f"lock held 4 s: deploy took {took:.2f} s; {notes}")
        assert ("pushing", "agent: waiting for the xtables lock") in notes
        applied = next(note for s, note in notes if s == "applied")
        assert "for the xtables lock" in applied and dd.agent_response["lock_wait_s"] > 2.5
        assert 3 < took < 15
        log = agent.log.read_text()
        assert "waiting for the xtables lock" in log and "Traceback" not in log
