"""`make run`: prepare the database, run web server, Celery worker and beat (and, as root,
the demo agent) together, and print one short status block.

Each process's banners and logs go to var/log/<name>.log; error records (with their
tracebacks) are echoed to the terminal as well, so a failure is never hidden in a file.
Ctrl-C (or SIGTERM) stops everything it started; if one process dies, the others are
stopped too, so a half-running console never lingers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from rampart_agent import demo
from rules.choices import AgentStatus
from rules.models import Device

from .rampart_bootstrap import ADMIN, Bootstrapped, bootstrap

DEFAULT_LISTEN = "127.0.0.1:8000"
DEMO_DEVICE = "demo"  # rampart_agent.demo enrols under this name by default
WEB_WAIT_SECONDS = 60
ENROL_WAIT_SECONDS = 45


class ErrorFilter:
    """Which lines of a log stream belong to an error record: a record at level ERROR or
    CRITICAL (Celery, Django, gunicorn and agent formats all start with a timestamp), a bare
    traceback, or the demo agent giving up; plus the record's indented and traceback lines
    (up to the exception line, and any traceback chained to it)."""

    RECORD = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d")
    LEVEL = re.compile(r"\b(ERROR|CRITICAL)\b")
    ALONE = re.compile(r"^(Traceback \(most recent call last\):|demo agent disabled:)")
    CHAINED = re.compile(r"^(During handling|The above exception|\s*$)")

    def __init__(self) -> None:
        self.in_error = False
        self.in_traceback = False  # frames: indented lines until the exception line
        self.after_exception = False  # only a chained traceback may follow

    def is_error(self, line: str) -> bool:
        if start := self.RECORD.match(line):
            # the level comes right after the timestamp, before any message text
            self.in_error = bool(self.LEVEL.search(line, start.end(), start.end() + 30))
            self.in_traceback = self.after_exception = False
        elif self.ALONE.match(line) or (self.in_error and line.startswith("Traceback ")):
            self.in_error, self.after_exception = True, False
            self.in_traceback = line.startswith("Traceback ")
        elif self.in_traceback:
            # the first line not indented is the exception: `module.Name: message`
            self.in_traceback = line[:1].isspace()
            self.after_exception = not self.in_traceback
        elif self.after_exception:
            self.in_error = self.after_exception = bool(self.CHAINED.match(line))
        elif self.in_error:
            self.in_error = line[:1].isspace()
        return self.in_error


class Child:
    """One process: its output appended to `log`, error lines also passed to `echo`."""

    def __init__(
        self, name: str, argv: list[str], env: dict, log: Path, echo: Callable[[str], None]
    ) -> None:
        self.name, self.log, self.echo = name, log, echo
        self.recent: deque[str] = deque(maxlen=12)
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Out of the terminal's process group: Ctrl-C reaches this command only, which
            # stops each child with one SIGTERM (a second signal cuts short the demo agent's
            # namespace cleanup and makes beat print a traceback).
            process_group=0,
            text=True,
            errors="replace",
        )
        self.pump = threading.Thread(target=self._pump, name=f"log-{name}", daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        errors = ErrorFilter()
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"--- {self.name} started {datetime.now().isoformat(timespec='seconds')}\n")
            for line in self.popen.stdout:
                out.write(line)
                out.flush()
                self.recent.append(line.rstrip("\n"))
                if errors.is_error(line):
                    self.echo(f"[{self.name}] {line.rstrip()}")


class Command(BaseCommand):
    help = "Migrate, bootstrap (admin user, demo policy) and run web + worker + beat."

    def add_arguments(self, parser):
        parser.add_argument("--listen", default=settings.RAMPART_LISTEN or DEFAULT_LISTEN)
        parser.add_argument("--no-demo", action="store_true", help="do not load the demo policy")

    def handle(self, *args, listen: str, no_demo: bool, **options):
        call_command("migrate", interactive=False, verbosity=0)
        if settings.CACHES["default"]["BACKEND"].endswith("DatabaseCache"):
            call_command("createcachetable", verbosity=0)
        done = bootstrap(demo=not no_demo)
        # The children follow --listen: settings add it to ALLOWED_HOSTS, the demo agent
        # enrols there.
        os.environ["RAMPART_LISTEN"] = listen
        log_dir = Path(settings.VAR_DIR) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        commands = self._commands(listen, log_dir)
        self.stdout.write(f"Starting Rampart ({', '.join(commands)}) …")
        started = timezone.now()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        lock = threading.Lock()

        def echo(line: str) -> None:
            with lock:
                self.stderr.write(line)

        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda *_: stopping.set())
        children: dict[str, Child] = {}
        try:
            for name, argv in commands.items():
                children[name] = Child(name, argv, env, log_dir / f"{name}.log", echo)
            if self._wait_for_web(listen, children, stopping):
                if "agent" in children:
                    self._wait_for_enrolment(started, children, stopping)
                block = self._status_block(listen, done, list(children), started, log_dir)
                with lock:
                    self.stdout.write(block)
            self._supervise(children, stopping)
        finally:
            self._stop(children)
        self.stdout.write("Rampart stopped.")

    def _commands(self, listen: str, log_dir: Path) -> dict[str, list[str]]:
        bin_dir = os.path.dirname(sys.executable)
        celery = [os.path.join(bin_dir, "celery"), "-A", "console"]
        commands = {
            "web": [
                os.path.join(bin_dir, "gunicorn"),
                "console.wsgi",
                *("--bind", listen, "--workers", "2", "--threads", "4"),
                "--no-control-socket",
                *("--access-logfile", str(log_dir / "access.log")),
            ],
            "worker": [
                *celery,
                *("worker", "--loglevel", "INFO", "--concurrency", "2"),
                *(["-P", "solo"] if settings.CELERY_BROKER_URL.startswith("filesystem") else []),
            ],
            "beat": [
                *celery,
                *("beat", "--loglevel", "INFO", "--scheduler", settings.CELERY_BEAT_SCHEDULER),
            ],
        }
        if agent := demo.command(sys.executable):
            commands["agent"] = agent
        return commands

    def _wait_for_web(
        self, listen: str, children: dict[str, Child], stopping: threading.Event
    ) -> bool:
        """Until the web server accepts connections; False if a process died, Ctrl-C came or
        time ran out."""
        address = _connect_address(listen)
        if address is None:
            return True
        deadline = time.monotonic() + WEB_WAIT_SECONDS
        while not stopping.is_set() and not _dead(children):
            try:
                socket.create_connection(address, timeout=1).close()
                return True
            except OSError:
                if time.monotonic() > deadline:
                    self.stderr.write(
                        f"nothing answers on {listen}; see {_shown(children['web'].log)}"
                    )
                    return False
                stopping.wait(0.3)
        return False

    def _wait_for_enrolment(
        self, started: datetime, children: dict[str, Child], stopping: threading.Event
    ) -> None:
        deadline = time.monotonic() + ENROL_WAIT_SECONDS
        if not Device.objects.filter(name=DEMO_DEVICE).exists():
            deadline = 0  # nothing to enrol as: the demo agent says so in its log
        while time.monotonic() < deadline and not stopping.is_set() and not _dead(children):
            if Device.objects.filter(name=DEMO_DEVICE, enrolled_at__gte=started).exists():
                break
            stopping.wait(0.5)
        close_old_connections()

    def _status_block(
        self, listen: str, done: Bootstrapped, names: list[str], started: datetime, log_dir: Path
    ) -> str:
        if done.generated_password:
            login = f"{ADMIN} / {done.generated_password}   (generated now; not shown again)"
        elif done.admin_created:
            login = f"{ADMIN}   (password from RAMPART_ADMIN_PASSWORD)"
        else:
            login = f"{ADMIN}   (password set on the first run)"
        logs = _shown(log_dir)
        lines = [
            "",
            "Rampart is running",
            f"  Console  http://{listen}/",
            f"  Login    {login}",
            f"  Demo     {_demo_state('agent' in names, started, logs)}",
            f"  Logs     {logs}/ ({', '.join([*names, 'access'])}); errors also appear here",
            "  Stop     Ctrl-C",
            "",
        ]
        return "\n".join(lines)

    def _supervise(self, children: dict[str, Child], stopping: threading.Event) -> None:
        while not stopping.is_set():
            if dead := _dead(children):
                for child in dead:
                    self.stderr.write(
                        f"{child.name} exited with code {child.popen.returncode}; "
                        f"the end of {_shown(child.log)}:"
                    )
                    self.stderr.write("\n".join(f"  {line}" for line in child.recent))
                self.stderr.write("stopping the rest")
                return
            stopping.wait(0.5)

    def _stop(self, children: dict[str, Child]) -> None:
        for child in children.values():
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for child in children.values():
            try:
                child.popen.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:  # with its own children (gunicorn's workers)
                os.killpg(child.popen.pid, signal.SIGKILL)
                child.popen.wait()
        for child in children.values():
            child.pump.join(timeout=5)


def _dead(children: dict[str, Child]) -> list[Child]:
    return [c for c in children.values() if c.popen.poll() is not None]


def _connect_address(listen: str) -> tuple[str, int] | None:
    """Where to reach gunicorn's bind address (a wildcard via loopback); None for unix:."""
    if listen.startswith(("unix:", "fd://")):
        return None
    parts = urlsplit(f"http://{listen}")
    host = parts.hostname or "127.0.0.1"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return host, parts.port or 8000


def _shown(path: Path) -> str:
    """`path` relative to the working directory when under it (var/log), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _demo_state(agent: bool, started: datetime, logs: str) -> str:
    device = Device.objects.filter(name=DEMO_DEVICE).first()
    close_old_connections()
    if device is None:
        return f"no device '{DEMO_DEVICE}' in this database"
    if not agent:
        return f"device '{DEMO_DEVICE}', no agent ({_no_agent_reason()})"
    if device.enrolled_at is None or device.enrolled_at < started:
        return f"device '{DEMO_DEVICE}': its agent has not enrolled yet (see {logs}/agent.log)"
    state = f"device '{DEMO_DEVICE}' enrolled, agent in network namespace {demo.NS}"
    if device.status != AgentStatus.UNKNOWN:
        state += f", {device.get_status_display()}"
    missing = [tool for tool in ("iptables-restore", "ipset") if shutil.which(tool) is None]
    if missing:
        state += f"; {' and '.join(missing)} missing: deploys to it will fail"
    return state


def _no_agent_reason() -> str:
    """Why demo.command() returned None."""
    if os.environ.get("RAMPART_DEMO_AGENT") == "0":
        return "RAMPART_DEMO_AGENT=0"
    if os.geteuid() != 0:
        return "it needs root: `sudo make run` starts one"
    return "it needs iproute2"
