"""The break-glass sequence on a real kernel: serve confirms X, a second process applies Y,
the console pushes X again; then `restore` and `serve` start and the kernel holds X."""

import json
import os
import subprocess

import pytest

from rampart_agent import protocol
from rampart_agent.state import StateDir
from tests.rampart_agent.agentns import AGENT, BACKENDS, ROOT, agent, policy, tool, write
from tests.support.netns import namespace, needs_netns

pytestmark = needs_netns
CONSOLE = os.path.join(os.path.dirname(__file__), "console_cli.py")
URL = "https://127.0.0.1:8745"


def serve(ns, backend, state: StateDir) -> subprocess.Popen:
    proc = ns.popen(
        "env",
        f"PYTHONPATH={ROOT}",
        *AGENT,
        "serve",
        "--state-dir",
        str(state.path),
        "--dataplane",
        backend,
        "--listen",
        "127.0.0.1:8745",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout.readline().startswith("ready")
    return proc


def push(ns, key_file, agent_pub, body) -> dict:
    out = ns.run(
        os.sys.executable,
        CONSOLE,
        str(key_file),
        agent_pub,
        URL,
        "POST",
        "/v1/apply",
        "10",
        input=json.dumps(body),
        timeout=30,
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_break_glass_beside_serve_then_restore_and_serve_start(backend, tmp_path):
    state = StateDir(tmp_path / "agent")
    agent_pub = protocol.public_key_b64(state.ensure_identity())
    console = protocol.generate_private_key()
    state.set_console_key(protocol.public_key_b64(console))
    key_file = tmp_path / "console.pem"
    key_file.write_bytes(protocol.private_key_to_pem(console))
    x = policy("127.0.0.1", "::1", ports=(443,))
    y = policy("127.0.0.1", "::1", ports=(22,))
    with namespace("agb") as ns:
        proc = serve(ns, backend, state)
        r = push(ns, key_file, agent_pub, {"bundle": x, "version": 1, "confirm_timeout": 0})
        assert r["status"] == 200 and r["signed"], r
        res = agent(ns, backend, state.path, "apply", write(tmp_path / "y.json", y), check=False)
        assert res.returncode == 0, res.stderr
        r = push(ns, key_file, agent_pub, {"bundle": x, "version": 3, "confirm_timeout": 0})
        assert r["status"] == 200 and r["body"]["result"] == "applied", r
        proc.terminate()
        proc.wait(timeout=30)
        res = agent(ns, backend, state.path, "restore", check=False)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["restored"] == x["hash"]
        proc = serve(ns, backend, state)
        saved = ns.run(tool(backend, suffix="-save")).stdout
        assert "--dport 443" in saved and "--dport 22 " not in saved
        proc.terminate()
        proc.wait(timeout=30)
