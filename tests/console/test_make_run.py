"""`make run` (manage.py rampart_run) brings up web, a real Celery worker and beat on the
embedded defaults (SQLite, filesystem broker), and Ctrl-C stops all of them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, token: str | None = None, data: dict | None = None) -> tuple[int, dict | str]:
    req = urllib.request.Request(
        url,
        data=json.dumps(data).encode() if data is not None else None,
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Token {token}"} if token else {}),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read().decode()
            return resp.status, json.loads(body) if "json" in resp.headers.get(
                "Content-Type", ""
            ) else body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_make_run_serves_the_console_runs_a_worker_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    env.update(
        RAMPART_VAR_DIR=str(tmp_path),
        RAMPART_LISTEN=f"127.0.0.1:{port}",
        DEBUG="1",
        RAMPART_ADMIN_PASSWORD="demo-Password-1",
        RAMPART_DEMO_AGENT="0",
        RAMPART_DEPLOY_MAX_ATTEMPTS="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "rampart_run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                status, body = call(base + "/login/")
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        else:
            pytest.fail("the console did not answer within 90 s")
        assert "Rampart" in body
        token = subprocess.run(
            [sys.executable, "manage.py", "create_api_token", "admin"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status, devices = call(base + "/api/v1/devices/", token)
        assert status == 200 and [d["name"] for d in devices["results"]] == [
            "demo"
        ]  # the demo policy
        # A deployment is picked up by the real worker through the filesystem broker: it
        # leaves `queued` (the demo device has no agent here, so it ends failed).
        status, dep = call(
            base + "/api/v1/deployments/", token, {"devices": [devices["results"][0]["id"]]}
        )
        assert status == 202, dep
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, dep = call(f"{base}/api/v1/deployments/{dep['id']}/", token)
            states = {d["state"] for d in dep["devices"]}
            if states - {"queued"}:
                break
            time.sleep(0.5)
        assert states - {"queued"}, dep
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert "Created user 'admin'" in out
    assert proc.returncode == 0
    time.sleep(0.5)
    leftovers = subprocess.run(
        ["pgrep", "-s", str(proc.pid), "-a"], capture_output=True, text=True
    ).stdout
    assert not leftovers.strip(), f"still running after Ctrl-C: {leftovers}"
