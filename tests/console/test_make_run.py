"""`make run` (manage.py rampart_run) brings up web, a real Celery worker and beat on the
embedded defaults (SQLite, filesystem broker), prints one status block (the banners and
logs go to var/log/), and Ctrl-C stops all of them. The Makefile installs the runtime
dependencies only, and the demo agent's firewall tools when root."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from console.management.commands.rampart_run import ErrorFilter

ROOT = Path(__file__).resolve().parents[2]
# Not in the default ALLOWED_HOSTS: the console must accept its own RAMPART_LISTEN address
# (all of 127.0.0.0/8 is loopback on Linux).
HOST = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
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


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read()


@pytest.mark.slow
def test_make_run_serves_the_console_runs_a_worker_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "ALLOWED_HOSTS"}
    }
    env.update(
        RAMPART_VAR_DIR=str(tmp_path),
        RAMPART_LISTEN=f"{HOST}:{port}",
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
        base = f"http://{HOST}:{port}"
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
        # the favicon: linked from every page, and at /favicon.ico for those who just ask
        svg = re.search(r'<link rel="icon" href="([^"]+\.svg)"', body)
        assert svg and 'href="/favicon.ico"' in body, body
        status, kind, data = fetch(base + svg.group(1))
        assert status == 200 and kind == "image/svg+xml" and data.startswith(b"<svg")
        status, kind, data = fetch(base + "/favicon.ico")
        assert status == 200 and "icon" in kind and data[:4] == b"\0\0\1\0"
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
    assert proc.returncode == 0, out
    # one short block, no banners, no traceback; the processes' output is in var/log/
    assert "Traceback" not in out and "celery@" not in out and "beat v" not in out, out
    block = out[out.index("Rampart is running") :]
    assert f"Console  http://{HOST}:{port}/" in block
    assert "Login    admin   (password from RAMPART_ADMIN_PASSWORD)" in block
    assert "demo-Password-1" not in out  # not generated here, so not shown
    assert "Demo     device 'demo', no agent (RAMPART_DEMO_AGENT=0)" in block
    assert f"Logs     {tmp_path / 'log'}/" in block and "Stop     Ctrl-C" in block
    logs = {p.stem: p.read_text() for p in (tmp_path / "log").glob("*.log")}
    assert set(logs) == {"web", "worker", "beat", "access"}
    assert "beat: Starting..." in logs["beat"] and "celery@" in logs["worker"]
    assert "GET /favicon.ico" in logs["access"]
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}.log:\n{text}"
    time.sleep(0.5)
    leftovers = subprocess.run(
        ["pgrep", "-s", str(proc.pid), "-a"], capture_output=True, text=True
    ).stdout
    assert not leftovers.strip(), f"still running after Ctrl-C: {leftovers}"


def test_error_records_and_their_tracebacks_reach_the_terminal():
    lines = {
        "[2026-12-06 14:12:23,164: INFO/MainProcess] beat: Starting...": False,
        "[2026-12-06 14:12:23,180: ERROR/MainProcess] Cannot add entry 'x'": True,
        "Traceback (most recent call last):": True,
        '  File "x.py", line 1, in f': True,
        "TypeError: Object of type ZoneInfo is not JSON serializable": True,
        "[2026-12-06 14:12:23,223: INFO/MainProcess] ERROR in a message is no level": False,
        "2026-12-06 14:12:11,577 ERROR celery.utils.dispatch.signal handler raised": True,
        '127.0.0.1 - - [06/Dec/2026:14:17:19 +0000] "GET / HTTP/1.1" 302 0': False,
        "[2026-12-06 14:29:28 +0000] [32573] [ERROR] Connection in use: ('127.0.0.1', 8731)": True,
        "[2026-12-06 14:29:50 +0000] [907] [INFO] Booting worker with pid: 907": False,
        "demo agent disabled: enrollment failed": True,
        "ready 198.18.0.2:8745": False,
        "Traceback (most recent call last):  ": True,
        "ImportError: cannot import name 'x'": True,
        " -------------- celery@vm v5.7.0 (collider)": False,
        "[2026-12-06 14:30:03,009: CRITICAL/MainProcess] Unrecoverable error": True,
        "  a message continued on an indented line": True,
        "Traceback (most recent call last):   ": True,
        "OSError: first": True,
        "": True,
        "During handling of the above exception, another exception occurred:": True,
        " ": True,
        "Traceback (most recent call last):    ": True,
        '  File "y.py", line 2, in g': True,
        "celery.exceptions.WorkerShutdown: 1": True,
        "worker: Warm shutdown (MainProcess)": False,
        "  indented, but the traceback is over": False,
    }
    errors = ErrorFilter()
    assert {line: errors.is_error(line) for line in lines} == lines


def make(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )


def test_make_run_installs_runtime_dependencies_and_make_test_the_test_extras(tmp_path):
    venv = tmp_path / "venv"
    run = make("-n", "run", f"VENV={venv}").stdout
    assert f"{venv}/bin/pip install -q -e .\n" in run and "[test]" not in run
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / "bin" / ".installed-run").touch()
    assert "pip install" not in make("-n", "run", f"VENV={venv}").stdout
    # a `make run` install is not a test install
    assert "pip install -q -e '.[test]'" in make("-n", "test-sqlite", f"VENV={venv}").stdout


def fake_debian(tmp_path: Path, uid: int) -> dict[str, str]:
    """dpkg says iptables, ipset and chromium are missing; apt-get only logs what it would
    install; `id -u` answers `uid`. The real ones would change this machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scripts = {
        "dpkg": 'case "$2" in iptables|ipset|chromium) exit 1;; esac; exit 0',
        "apt-get": f'echo "$*" >> {tmp_path}/apt.log',
        "id": f"echo {uid}",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_make_run_installs_the_demo_agents_firewall_tools_as_root(tmp_path):
    out = make("run-sysdeps", **fake_debian(tmp_path, 0)).stdout
    assert "installing Debian packages: iptables ipset" in out
    installed = (tmp_path / "apt.log").read_text()
    assert "install -y -qq --no-install-recommends iptables ipset\n" in installed
    assert "chromium" not in installed  # test-only
    (tmp_path / "apt.log").unlink()
    make("sysdeps", **fake_debian(tmp_path, 0))
    assert "iptables ipset chromium" in (tmp_path / "apt.log").read_text()


def test_make_run_as_non_root_or_without_demo_agent_installs_nothing(tmp_path):
    out = make("run-sysdeps", **fake_debian(tmp_path, 1000)).stdout
    assert out.startswith("not root: no demo agent")
    assert make("run-sysdeps", RAMPART_DEMO_AGENT="0", **fake_debian(tmp_path, 0)).stdout == ""
    assert not (tmp_path / "apt.log").exists()
