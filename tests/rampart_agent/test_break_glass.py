"""The state directory has one owner: break-glass commands beside a running `serve`."""

import json

import pytest

from rampart_agent.sample import make_bundle
from tests.rampart_agent.serve_proc import ServeProcess, run_agent

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def policy(action: str, device: str = "host-1") -> dict:
    spec = {
        "filter": {"chains": {"RPT-INPUT": [f"-j {action}"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}
    }
    return make_bundle(v4=spec, device=device)


def test_break_glass_apply_beside_serve_then_serve_and_restore_start(tmp_path):
    """The campaign's sequence: serve confirms X; a break-glass `apply Y` runs as a second
    process; the console pushes X again and it is confirmed. Before the owner lock, the
    second process's cleanup deleted X's file while serve believed it stored: confirmed.json
    named a missing bundle and `serve` and `restore` exited 1 at every start."""
    state = tmp_path / "agent"
    x, y = policy("ACCEPT"), policy("DROP")
    agent = ServeProcess(state)
    try:
        resp = agent.call("POST", "/v1/apply", {"bundle": x, "version": 1, "confirm_timeout": 0})
        assert resp.status_code == 200, resp.text
        (tmp_path / "y.json").write_text(json.dumps(y))
        res = run_agent(state, "apply", str(tmp_path / "y.json"))
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["hash"] == y["hash"]
        # the serving engine did the work: it knows Y is what the kernel holds
        assert agent.call("GET", "/v1/status").json()["applied"]["hash"] == y["hash"]
        resp = agent.call("POST", "/v1/apply", {"bundle": x, "version": 3, "confirm_timeout": 0})
        assert resp.status_code == 200, resp.text
    finally:
        agent.stop()
    confirmed = json.loads((state / "confirmed.json").read_text())
    assert confirmed["hash"] == x["hash"] and (state / "bundles" / f"{x['hash']}.json").exists()
    res = run_agent(state, "restore")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["restored"] == x["hash"]
    again = ServeProcess(state)
    try:
        st = again.call("GET", "/v1/status").json()
        assert st["applied"]["hash"] == x["hash"] and st["applied"]["version"] == 3
        assert not st["drift"]["drifted"]
    finally:
        again.stop()


def test_local_commands_go_through_serve_and_a_second_serve_refuses(tmp_path):
    state = tmp_path / "agent"
    agent = ServeProcess(state)
    try:
        (tmp_path / "x.json").write_text(json.dumps(policy("ACCEPT")))
        res = run_agent(state, "apply", str(tmp_path / "x.json"), "--confirm-timeout", "300")
        assert res.returncode == 0, res.stderr
        version = json.loads(res.stdout)["version"]
        pending = json.loads(run_agent(state, "status").stdout)["pending"]
        assert pending["version"] == version
        res = run_agent(state, "confirm", str(version + 5))
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert run_agent(state, "confirm", str(version)).returncode == 0
        assert json.loads(run_agent(state, "rollback").stdout)["result"] == "rolled_back"
        assert run_agent(state, "restore").returncode == 0
        # a second serve on the same directory: one readable line, non-zero exit
        res = run_agent(state, "serve", "--listen", "127.0.0.1:0")
        assert res.returncode == 1
        assert res.stderr.strip() == (
            f"rampart-agent: error: rampart-agent serve (pid {agent.proc.pid}) owns {state}; "
            "stop it first"
        )
        # without its control socket, a local command refuses in one line
        (state / "run" / "control.sock").unlink()
        res = run_agent(state, "rollback")
        assert res.returncode == 1 and "Traceback" not in res.stderr
        line = res.stderr.strip()
        assert line.startswith(f"rampart-agent: error: rampart-agent serve (pid {agent.proc.pid})")
        assert line.endswith("stop it first") and "\n" not in line
    finally:
        log = agent.stop()
    assert "control socket: apply from pid" in log
