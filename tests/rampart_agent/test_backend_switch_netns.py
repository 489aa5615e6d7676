"""Switching an agent between the iptables backends (legacy <-> nft) leaves no gap.

A stream of UDP datagrams, one to an allowed and one to a dropped port every millisecond,
runs while the agent restarts on the other backend: the new backend's policy is in before
the old backend's rules go, so not one datagram to the dropped port gets through and not
one to the allowed port is lost.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rampart_agent.agentns import AGENT, ROOT, policy, tool
from tests.rampart_agent.test_agent_serve_netns import Console
from tests.support.netns import host_pair, needs_netns

pytestmark = needs_netns
STREAM = str(Path(__file__).with_name("udp_stream.py"))
ALLOWED, DROPPED = 9001, 9002


def serve(server, state: Path, backend: str) -> subprocess.Popen:
    proc = server.popen(
        "env",
        f"PYTHONPATH={ROOT}",
        *AGENT,
        "serve",
        "--state-dir",
        str(state),
        "--dataplane",
        backend,
        "--listen",
        f"{server.addr4}:8745",
        "--resync-interval",
        "0",
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().startswith("ready")
    return proc


def stream(ns, *args: str) -> subprocess.Popen:
    proc = ns.popen(
        sys.executable, STREAM, *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def counts(proc: subprocess.Popen) -> dict[str, int]:
    out, _ = proc.communicate("", timeout=10)
    return json.loads(out)


def our_chains(server, backend: str) -> bool:
    return "RPT-INPUT" in server.run(tool(backend, suffix="-save")).stdout


@pytest.mark.parametrize("old,new", [("legacy", "nft"), ("nft", "legacy")])
def test_switching_backend_loads_the_new_policy_before_removing_the_old(old, new, tmp_path):
    with host_pair("abs") as (client, server):
        console = Console(client, server, tmp_path, old)
        accept_udp = f"-p udp -m udp --dport {ALLOWED} -m comment --comment rpt:sys:udp -j ACCEPT"
        v1 = policy(client.addr4, client.addr6, ports=(8745,), extra_web=[accept_udp])
        r = console.call("POST", "/v1/apply", {"bundle": v1, "version": 1, "confirm_timeout": 0})
        assert r["status"] == 200, r
        console.proc.terminate()  # the kernel keeps the policy; the agent comes back on `new`
        console.proc.wait(timeout=10)
        assert our_chains(server, old) and not our_chains(server, new)

        recv = stream(server, "recv", server.addr4, str(ALLOWED), str(DROPPED))
        send = stream(client, "send", server.addr4, "0.001", str(ALLOWED), str(DROPPED))
        time.sleep(0.3)
        t0 = time.monotonic()
        agent = serve(server, console.state.path, new)  # start() switches the backend
        switch_s = time.monotonic() - t0
        time.sleep(0.3)
        sent, got = counts(send), counts(recv)
        agent.terminate()
        agent.wait(timeout=10)

        assert our_chains(server, new) and not our_chains(server, old)
        print(f"{old}->{new}: {sent} sent, {got} received, agent start {switch_s:.2f} s")
        assert sent[str(ALLOWED)] > 500  # the stream ran through the whole switch
        assert got[str(DROPPED)] == 0, f"{got[str(DROPPED)]} datagrams got through a gap"
        assert got[str(ALLOWED)] == sent[str(ALLOWED)], "allowed datagrams were dropped"
