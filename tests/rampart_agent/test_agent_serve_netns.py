"""Real kernel + real HTTPS: a console cut off by a bundle, a failing health probe."""

import json
import os
import subprocess
import time

import pytest

from rampart_agent import protocol
from rampart_agent.state import StateDir
from tests.rampart_agent.agentns import AGENT, ROOT, policy
from tests.support.netns import host_pair, needs_netns

pytestmark = needs_netns
CONSOLE = os.path.join(os.path.dirname(__file__), "console_cli.py")


class Console:
    """Signs requests with a console key and sends them from the client namespace."""

    def __init__(self, client, server, tmp_path, backend):
        self.client = client
        self.key = protocol.generate_private_key()
        self.key_file = tmp_path / "console.pem"
        self.key_file.write_bytes(protocol.private_key_to_pem(self.key))
        self.state = StateDir(tmp_path / "agent")
        self.agent_pub = protocol.public_key_b64(self.state.ensure_identity())
        self.state.set_console_key(protocol.public_key_b64(self.key))
        self.url = f"https://{server.addr4}:8745"
        self.proc = server.popen(
            "env",
            f"PYTHONPATH={ROOT}",
            *AGENT,
            "serve",
            "--state-dir",
            str(self.state.path),
            "--dataplane",
            backend,
            "--listen",
            f"{server.addr4}:8745",
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout.readline().startswith("ready")

    def call(self, method, path, body=None, timeout=3.0):
        data = json.dumps(body) if body is not None else ""
        out = self.client.run(
            os.sys.executable,
            CONSOLE,
            str(self.key_file),
            self.agent_pub,
            self.url,
            method,
            path,
            str(timeout),
            input=data,
            timeout=timeout + 10,
        ).stdout
        return json.loads(out)


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_bundle_cutting_the_console_off_is_rolled_back_within_timeout(backend, tmp_path):
    with host_pair("ags") as (client, server):
        console = Console(client, server, tmp_path, backend)
        v1 = policy(client.addr4, client.addr6, ports=(8745,))
        r = console.call("POST", "/v1/apply", {"bundle": v1, "version": 1, "confirm_timeout": 5})
        assert r["status"] == 200 and r["signed"], r
        assert console.call("POST", "/v1/confirm", {"version": 1})["body"]["result"] == "confirmed"

        cut = policy(client.addr4, client.addr6, ports=())  # the console's port is gone
        t0 = time.monotonic()
        r = console.call("POST", "/v1/apply", {"bundle": cut, "version": 2, "confirm_timeout": 2})
        assert r["status"] == 200, r  # the answer leaves on the established connection
        assert "error" in console.call("POST", "/v1/confirm", {"version": 2}, timeout=1)
        while "error" in (st := console.call("GET", "/v1/status", timeout=0.5)):
            assert time.monotonic() - t0 < 2 + 5, "not rolled back in time"
        assert time.monotonic() - t0 < 2 + 5
        body = st["body"]
        assert body["applied"]["version"] == 1 and body["pending"] is None
        assert body["last_rollback"]["version"] == 2
        assert "no confirm" in body["last_rollback"]["reason"]
        r = console.call("POST", "/v1/confirm", {"version": 2})
        assert r["status"] == 409 and r["body"]["result"] == "rolled_back"


def test_failing_probe_rolls_back_at_once(tmp_path):
    with host_pair("agp") as (client, server):
        client.listen(tcp=[7000])
        console = Console(client, server, tmp_path, "nft")
        probe = [
            {"type": "tcp", "host": client.addr4, "port": 7000, "timeout": 1},
            {"type": "icmp", "host": client.addr6, "timeout": 1},
        ]
        v1 = policy(client.addr4, client.addr6, ports=(8745,))
        r = console.call(
            "POST", "/v1/apply", {"bundle": v1, "version": 1, "confirm_timeout": 0, "probes": probe}
        )
        assert r["status"] == 200, r
        blocked = policy(client.addr4, client.addr6, ports=(8745,), block=True)
        t0 = time.monotonic()
        r = console.call(
            "POST",
            "/v1/apply",
            {"bundle": blocked, "version": 2, "confirm_timeout": 30, "probes": probe},
            timeout=10,
        )
        assert r["status"] == 422 and r["body"]["result"] == "rolled_back", r
        assert "probe failed" in r["body"]["error"]
        assert time.monotonic() - t0 < 5  # at once, not after the 30 s confirm timeout
        assert server.tcp_ok(client.addr4, 7000)  # the rollback restored the path
        st = console.call("GET", "/v1/status")["body"]
        assert st["applied"]["version"] == 1 and st["last_rollback"]["version"] == 2
