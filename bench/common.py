"""What the benches that drive a real console share: the paths, a free port, `manage.py`,
a gunicorn console on a fresh database with an API token (and a logged-in browser session
when asked), a timer, and the addresses of large groups.

Imported by the bench scripts, which run as `python bench/<name>.py` (this directory is
then first on sys.path): `from common import Console, host, ms`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
RESULTS = ROOT / "bench" / "results.jsonl"
PASSWORD = "bench-Rampart-123"


def host(i: int) -> str:
    """The i-th IPv4 host of the benchmarking range 198.18.0.0/15 (131,072 of them): the
    members of a large address group."""
    return f"198.{18 + (i >> 16 & 1)}.{i >> 8 & 255}.{i & 255}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [str(PYTHON), "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def ms(func: Callable[[], object]) -> float:
    """Milliseconds `func` took."""
    start = time.perf_counter()
    func()
    return (time.perf_counter() - start) * 1000


class Console:
    """gunicorn on a fresh database (SQLite in `var_dir` unless `database_url`), an operator
    with an API token (`api`), and with `ui` a logged-in browser session (`ui`); stops
    (only its own process) on exit."""

    def __init__(
        self,
        var_dir: Path,
        *,
        database_url: str | None = None,
        workers: int = 1,
        ui: bool = False,
        timeout: int = 600,
    ) -> None:
        self.db = var_dir / "bench.sqlite3"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RAMPART_", "DATABASE_URL", "REDIS_URL", "CELERY_"))
        }
        self.env.update(
            RAMPART_VAR_DIR=str(var_dir),
            DATABASE_URL=database_url or f"sqlite:///{self.db}",
            DEBUG="0",
            LOG_LEVEL="WARNING",
            CELERY_BROKER_URL="memory://",
        )
        self.base = f"http://127.0.0.1:{free_port()}"
        self.workers, self.with_ui, self.timeout = workers, ui, timeout
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Console:
        manage(self.env, "migrate", "--noinput", "-v0")
        if self.with_ui:
            manage(self.env, "createcachetable", "-v0")
            manage(self.env, "collectstatic", "--noinput", "-v0")
        manage(
            self.env,
            "shell",
            "-c",
            "from django.contrib.auth.models import User, Group;"
            f"u = User.objects.create_user('bench', password={PASSWORD!r});"
            "u.groups.add(Group.objects.get(name='operator'))",
        )
        token = manage(self.env, "create_api_token", "bench").strip()
        self.proc = subprocess.Popen(
            [
                str(GUNICORN),
                "console.wsgi:application",
                "--bind",
                self.base.removeprefix("http://"),
                "--workers",
                str(self.workers),
                "--timeout",
                str(self.timeout),
                "--no-control-socket",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
        )
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Token {token}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.api.get(f"{self.base}/api/v1/me/", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            self.__exit__()
            raise RuntimeError("gunicorn did not answer within 120 s")
        if self.with_ui:
            self.ui = requests.Session()
            self.ui.get(f"{self.base}/login/", timeout=30)
            self.ui.post(
                f"{self.base}/login/",
                data={
                    "username": "bench",
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": self.ui.cookies["csrftoken"],
                },
                headers={"Referer": f"{self.base}/login/"},
                timeout=30,
            ).raise_for_status()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        """One API call; a 3xx/4xx/5xx answer raises with its body."""
        response = self.api.request(method, f"{self.base}{path}", json=body, timeout=self.timeout)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json() if response.content else {}

    def page(self, path: str) -> None:
        """One dashboard page, as the logged-in user."""
        self.ui.get(f"{self.base}{path}", timeout=self.timeout).raise_for_status()
