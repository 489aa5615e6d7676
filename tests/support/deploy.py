"""Helpers for the deployment tests: policy fixtures, in-process agents, a real Celery worker.

Agents here are the real agent server and engine (rampart_agent.server/engine)
with the recording dataplane, on loopback; the namespaced tests start `rampart-agent serve`
inside `rpt_` network namespaces instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from rampart_agent import protocol
from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import Engine
from rampart_agent.server import AgentHTTPServer
from rampart_agent.state import StateDir
from tests.support.netns import sh

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def make_policy(
    name: str = "web",
    ports: tuple[int, ...] = (80,),
    assertions: list | None = None,
    sources: tuple[str, ...] = ("198.18.0.0/15",),
):
    """A rule set allowing tcp `ports` from `sources` and a device group using it."""
    from rules import services as rules_services
    from rules.models import DeviceGroup, DeviceGroupRuleSet, RuleSet

    ruleset = RuleSet.objects.create(name=name, assertions=assertions or [])
    for port in ports:
        rules_services.rule_create(
            ruleset=ruleset,
            data={
                "chain": "input",
                "action": "accept",
                "protocol": "tcp",
                "dports": [str(port)],
                "sources": list(sources),
                "comment": f"port {port}",
            },
        )
    group = DeviceGroup.objects.create(name=f"{name}-servers")
    DeviceGroupRuleSet.objects.create(group=group, ruleset=ruleset)
    return ruleset, group


def make_device(
    name: str,
    *,
    group=None,
    address: str = "127.0.0.1",
    port: int = 8745,
    agent: Any = None,
    **fields: Any,
):
    from rules.models import Device, DeviceMembership

    if agent is not None:
        fields = {
            "agent_public_key": agent.public_key,
            "agent_cert_fingerprint": agent.fingerprint,
            **fields,
        }
    device = Device.objects.create(
        name=name, address=address, agent_port=agent.port if agent else port, **fields
    )
    if group is not None:
        DeviceMembership.objects.create(device=device, group=group)
    return device


@dataclass
class LocalAgent:
    """An agent server in a thread of this process (recording dataplane)."""

    server: AgentHTTPServer
    engine: Engine
    state: StateDir
    dp: RecordingDataplane
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def public_key(self) -> str:
        return protocol.public_key_b64(self.state.ensure_identity())

    @property
    def fingerprint(self) -> str:
        return self.state.cert_fingerprint()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.engine.shutdown()


@contextmanager
def local_agent(
    state_dir: Path,
    console_public_key: str,
    *,
    port: int = 0,
    fail_on: Callable[[str, str], str | None] | None = None,
    host: str = "127.0.0.1",
) -> Iterator[LocalAgent]:
    state = StateDir(state_dir)
    state.ensure_identity("local-agent")
    state.set_console_key(console_public_key)
    dp = RecordingDataplane(fail_on=fail_on)
    engine = Engine(state, dp)
    engine.start()
    server = AgentHTTPServer((host, port), engine, state)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    agent = LocalAgent(server, engine, state, dp, thread)
    try:
        yield agent
    finally:
        agent.stop()


# --- a real Celery worker ------------------------------------------------------------------


def worker_env(database_url: str, broker_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAMPART_", "CELERY_", "REDIS_URL"))
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "RAMPART_VAR_DIR": str(var_dir),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "console.settings",
        }
    )
    if broker_url.startswith("redis://"):
        env["REDIS_URL"] = broker_url
    env.update(extra)
    return env


@dataclass
class Worker:
    proc: subprocess.Popen
    log: Path

    def kill9(self) -> None:
        """SIGKILL the whole worker (main process and pool children), like a host crash."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill9()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""


def start_worker(
    env: dict[str, str],
    log: Path,
    *,
    concurrency: int = 1,
    beat: bool = False,
    ready_timeout: float = 30,
) -> Worker:
    """`celery -A console worker` (with embedded beat) in its own process group, consuming
    the queue named by RAMPART_CELERY_QUEUE; returns once it is ready."""
    queue = env.get("RAMPART_CELERY_QUEUE", "celery")
    n = 1
    while log.with_suffix(f".{n}.log").exists():
        n += 1
    log = log.with_suffix(f".{n}.log")
    cmd = [
        str(BIN / "celery"),
        "-A",
        "console",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "-Q",
        queue,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"rpt-test-{os.getpid()}-{time.monotonic_ns()}@%h",
    ]
    if beat:
        cmd += ["-B", "--schedule", str(log.with_suffix(".beat"))]
    if env.get("CELERY_BROKER_URL", "").startswith("filesystem://"):
        cmd += ["-P", "solo"]  # the embedded broker is single-host, single-consumer
    out = log.open("ab")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    worker = Worker(proc, log)
    deadline = time.monotonic() + ready_timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {worker.output()}")
            if b" ready." in log.read_bytes():
                return worker
            time.sleep(0.1)
        raise RuntimeError(f"celery worker not ready in {ready_timeout}s: {worker.output()}")
    except BaseException:  # interrupted or failed: never leave a worker behind
        worker.stop()
        raise


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- a whole console in processes: file database, gunicorn, Celery worker (+ beat) -----------


def migrate_file_db(path: Path) -> str:
    """A migrated SQLite file every process of the stack opens (WAL: readers never block)."""
    import sqlite3

    url = f"sqlite:///{path}"
    env = worker_env(url, "memory://", path.parent / "var")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0", "--skip-checks"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=180,
    )
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
    return url


@contextmanager
def use_database(url: str) -> Iterator[None]:
    """Point this thread's default connection at `url` for the block.

    The test database of pytest-django stays untouched (its connection object is put
    back afterwards), so the other tests of the session are not affected.
    """
    import environ
    from django.db import connections

    old = connections["default"]
    settings_dict = {**old.settings_dict, **environ.Env.db_url_config(url)}
    settings_dict["OPTIONS"] = (
        {"timeout": 30, "transaction_mode": "IMMEDIATE"}
        if settings_dict["ENGINE"].endswith("sqlite3")
        else {}
    )
    settings_dict["TEST"] = {**old.settings_dict.get("TEST", {})}
    new = old.__class__(settings_dict, alias="default")
    connections["default"] = new
    try:
        yield
    finally:
        new.close()
        connections["default"] = old


def start_gunicorn(
    env: dict[str, str], binds: list[str], log: Path, timeout: float = 40
) -> subprocess.Popen:
    cmd = [
        str(BIN / "gunicorn"),
        "console.wsgi",
        "--workers",
        "1",
        "--threads",
        "4",
        "--no-control-socket",
        "--graceful-timeout",
        "2",
    ] + [arg for b in binds for arg in ("--bind", b)]
    out = log.open("ab")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log.read_text()[-3000:]}")
            try:
                requests.get(f"http://{binds[0]}/api/v1/deployments/", timeout=2)
                return proc
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn not up in {timeout}s: {log.read_text()[-3000:]}")
    except BaseException:
        stop_process(proc)
        raise


def stop_process(proc: subprocess.Popen) -> None:
    """TERM the process group, KILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def api_token(username: str = "deployer", role: str = "operator") -> str:
    """A knox token for a user holding `role` (in whatever database is current)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from knox.models import AuthToken

    user, _ = get_user_model().objects.get_or_create(username=username)
    user.groups.add(Group.objects.get(name=role))
    return AuthToken.objects.create(user=user)[1]


def serve_agent_cmd(
    state_dir: Path, listen: str, dataplane: str = "recording", confirm_timeout: int = 30
) -> list[str]:
    return [
        "env",
        f"PYTHONPATH={ROOT}",
        sys.executable,
        "-m",
        "rampart_agent.cli",
        "serve",
        "--state-dir",
        str(state_dir),
        "--dataplane",
        dataplane,
        "--listen",
        listen,
        "--confirm-timeout",
        str(confirm_timeout),
        "--resync-interval",
        "0",
        # conditional polls re-read the kernel every second: the tests see drift at once
        "--status-recheck",
        "1",
    ]


def wait_ready(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait for the agent's `ready` line on stdout."""
    assert proc.stdout is not None
    import select

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("ready"):
                return
            if not line and proc.poll() is not None:
                raise RuntimeError(f"agent exited with {proc.returncode}")
    raise RuntimeError("agent not ready")


@dataclass
class Stack:
    """One console: gunicorn + worker(+beat) sharing a database and a broker."""

    tmp: Path
    db_url: str
    env: dict[str, str]
    api_url: str
    token: str = ""
    web: subprocess.Popen | None = None
    worker: Worker | None = None
    procs: list[subprocess.Popen] = field(default_factory=list)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.request(
            method, self.api_url + path, headers={"Authorization": f"Token {self.token}"}, **kwargs
        )

    concurrency: int = 2
    beat: bool = True

    def start_worker(self, concurrency: int | None = None) -> Worker:
        if self.worker is not None:
            self.worker.stop()
        self.concurrency = concurrency or self.concurrency
        self.worker = start_worker(
            self.env, self.tmp / "worker.log", concurrency=self.concurrency, beat=self.beat
        )
        return self.worker

    def deploy(self, **body) -> int:
        resp = self.api("POST", "/api/v1/deployments/", json=body)
        assert resp.status_code == 202, resp.text
        return resp.json()["id"]

    def wait_done(self, deployment_id: int, timeout: float = 60) -> dict:
        def done():
            body = self.api("GET", f"/api/v1/deployments/{deployment_id}/").json()
            return body if body["status"] not in ("queued", "running") else None

        try:
            return wait_for(done, timeout, 0.2, f"deployment {deployment_id}")
        except AssertionError:
            body = self.api("GET", f"/api/v1/deployments/{deployment_id}/").json()
            raise AssertionError(
                f"{body}\n--- worker log ---\n{self.worker.output() if self.worker else ''}"
            ) from None

    def enroll(
        self, device_id: int, state_dir: Path, listen_port: int, console_url: str, ns=None
    ) -> None:
        """Token from the API, then `rampart-agent enroll` (inside `ns` when given)."""
        resp = self.api("POST", f"/api/v1/devices/{device_id}/enrollment-token/", json={})
        assert resp.status_code == 201, resp.text
        cmd = [
            "env",
            f"PYTHONPATH={ROOT}",
            sys.executable,
            "-m",
            "rampart_agent.cli",
            "enroll",
            "--console",
            console_url,
            "--token",
            resp.json()["token"],
            "--listen-port",
            str(listen_port),
            "--state-dir",
            str(state_dir),
            "--dataplane",
            "recording",
        ]
        result = ns.run(*cmd, check=False) if ns is not None else sh(*cmd, check=False)
        assert result.returncode == 0, result.stderr

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        if self.worker:
            self.worker.stop()
        if self.web:
            stop_process(self.web)


@contextmanager
def console_stack(
    tmp: Path,
    db_url: str,
    broker_url: str,
    binds: list[str],
    *,
    concurrency: int = 2,
    beat: bool = True,
    **extra_env: str,
) -> Iterator[Stack]:
    """gunicorn + `celery worker` (+ beat) on `db_url` and `broker_url`, with test-sized knobs:
    3 push attempts, 1-2 s backoff, 6 s broker visibility timeout, a poll every 2 s."""
    env = worker_env(
        db_url,
        broker_url,
        tmp / "var",
        **{
            "RAMPART_CELERY_QUEUE": f"rpt-deploy-test-{os.getpid()}-{tmp.name}",
            "RAMPART_CONSOLE_KEY_FILE": str(tmp / "console-key.pem"),
            "RAMPART_DEPLOY_MAX_ATTEMPTS": "3",
            "RAMPART_DEPLOY_RETRY_BACKOFF": "1",
            "RAMPART_DEPLOY_RETRY_BACKOFF_MAX": "2",
            "RAMPART_BROKER_VISIBILITY_TIMEOUT": "6",
            "RAMPART_BROKER_RESTORE_INTERVAL": "1",
            "RAMPART_STATUS_POLL_SECONDS": "2",
            "RAMPART_POLL_TICK_SECONDS": "1",  # beat hands out due polls every second
            "RAMPART_CONFIRM_TIMEOUT": "10",
            "ALLOWED_HOSTS": ",".join(b.rpartition(":")[0] for b in binds),
            **extra_env,
        },
    )
    stack = Stack(tmp, db_url, env, f"http://{binds[0]}", concurrency=concurrency, beat=beat)
    try:
        with use_database(db_url):
            stack.token = api_token(f"deployer-{tmp.name}")
        stack.web = start_gunicorn(env, binds, tmp / "web.log")
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
        if broker_url.startswith("amqp://"):  # RabbitMQ queues outlive their consumers
            from kombu import Connection

            with Connection(broker_url, connect_timeout=5) as conn:
                conn.default_channel.queue_delete(env["RAMPART_CELERY_QUEUE"])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
