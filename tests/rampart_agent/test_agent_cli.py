"""The CLI as a user meets it (recording dataplane, no root): errors, local apply, fleet."""

import json
import subprocess
import sys

import pytest
import requests

from rampart_agent import __version__, protocol
from rampart_agent.sample import make_bundle

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
AGENT = [sys.executable, "-m", "rampart_agent.cli"]


def run(*args, **kw):
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=60, **kw)


def test_local_apply_status_rollback_and_readable_errors(tmp_path):
    st = ["--state-dir", str(tmp_path / "s"), "--dataplane", "recording"]
    spec = {"filter": {"chains": {"RPT-INPUT": ["-j ACCEPT"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    (tmp_path / "b.json").write_text(json.dumps(make_bundle(v4=spec)))
    res = run("apply", str(tmp_path / "b.json"), *st)
    assert res.returncode == 0 and json.loads(res.stdout)["version"] == 1
    status = json.loads(run("status", *st).stdout)
    assert status["applied"]["version"] == 1 and not status["drift"]["drifted"]
    req = {"bundle": make_bundle(v4=spec, device="other"), "version": 1}
    (tmp_path / "r.json").write_text(json.dumps(req))
    res = run("apply", str(tmp_path / "r.json"), *st)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("rampart-agent: error: version 1")
    (tmp_path / "bad.json").write_text('{"format": 1, "iptables_v4": "*filter\\n-A X -j Y\\n"}')
    for path in ("bad.json", "missing.json"):
        res = run("apply", str(tmp_path / path), *st)
        assert res.returncode == 1 and "Traceback" not in res.stderr
        assert res.stderr.strip().splitlines()[-1].startswith("rampart-agent: error: ")
    assert json.loads(run("rollback", *st).stdout)["version"] == 1
    assert run("restore", *st).returncode == 0


def test_fleet_serves_many_signed_agents_in_one_process(tmp_path):
    console = protocol.generate_private_key()
    proc = subprocess.Popen(
        [
            *AGENT,
            "fleet",
            "--count",
            "3",
            "--base-port",
            "0",
            "--state-root",
            str(tmp_path),
            "--console-key",
            protocol.public_key_b64(console),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready 3 agents"), line
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        assert len({a["public_key"] for a in manifest}) == 3
        spec = {
            "filter": {"chains": {"RPT-INPUT": ["-j ACCEPT"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}
        }
        body = json.dumps(
            {"bundle": make_bundle(v4=spec), "version": 1, "confirm_timeout": 0}
        ).encode()
        for agent in manifest:
            headers = protocol.sign_request(console, "POST", "/v1/apply", body)
            resp = requests.post(
                f"https://127.0.0.1:{agent['port']}/v1/apply",
                data=body,
                headers=headers,
                verify=False,
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            protocol.verify_response(
                protocol.load_public_key_b64(agent["public_key"]),
                200,
                resp.content,
                headers[protocol.HEADER_NONCE],
                resp.headers[protocol.HEADER_SIGNATURE],
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_version_and_python_dash_m(tmp_path):
    for argv in (AGENT, [sys.executable, "-m", "rampart_agent"]):
        res = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and res.stdout.strip() == f"rampart-agent {__version__}"
    res = subprocess.run(
        [sys.executable, "-m", "rampart_agent", "status", "--state-dir", str(tmp_path)]
        + ["--dataplane", "recording"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and json.loads(res.stdout)["applied"] is None
