"""Large address group bench: a group of N literals (100,000 by default) created, used and
changed through the API, as an admin would, against a real server process.

Measures: creating the group (one POST), an unrelated rule write with the group present
(p50/p95), one-member changes (PATCH add, PATCH remove, PUT of the whole list with one
member swapped) end to end (API → stored → audit), the audit rows each change wrote, the
database growth, a members page, the group's detail, an export, the rule set editor and
preview of a rule set using the group, the group's dashboard page, and `audit_verify`.
Pages are timed as bench/ui.py does: the median of three warm requests (the first, cold
one is kept as first_ms). Prints a table and appends one JSON line to bench/results.jsonl.

Targets (issue 18): create ≤ 3 s; one-member change ≤ 300 ms; unrelated rule write p50 ≤
100 ms; growth ≤ 20 MB per 100k-member group; editor and preview ≤ 1 s.

    .venv/bin/python bench/groups.py                  # 100,000 members, SQLite in a temp dir
    .venv/bin/python bench/groups.py --members 20000 --samples 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
RESULTS = ROOT / "bench" / "results.jsonl"
PASSWORD = "bench-Rampart-123"
TARGETS = {  # row name → (limit, unit)
    "create group (POST)": (3000, "ms"),
    "add one member (PATCH)": (300, "ms"),
    "remove one member (PATCH)": (300, "ms"),
    "unrelated rule write p50": (100, "ms"),
    "rule set editor": (1000, "ms"),
    "rule set preview": (1000, "ms"),
    "database growth": (20 * 100_000, "kB/100k"),  # checked per 100k members below
}


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


def literal(i: int) -> str:
    return f"198.{18 + (i >> 16 & 1)}.{i >> 8 & 255}.{i & 255}"


class Console:
    """gunicorn on a fresh SQLite database, an API token and a logged-in browser session;
    stops (only its own process) on exit."""

    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "bench.sqlite3"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RAMPART_", "DATABASE_URL", "REDIS_URL", "CELERY_"))
        }
        self.env.update(
            RAMPART_VAR_DIR=str(tmp),
            DATABASE_URL=f"sqlite:///{self.db}",
            DEBUG="0",
            LOG_LEVEL="WARNING",
            CELERY_BROKER_URL="memory://",
        )
        self.base = f"http://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Console:
        manage(self.env, "migrate", "--noinput", "-v0")
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
                "1",
                "--timeout",
                "600",
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
        response = self.api.request(method, f"{self.base}{path}", json=body, timeout=600)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json() if response.content else {}

    def page(self, path: str) -> None:
        self.ui.get(f"{self.base}{path}", timeout=600).raise_for_status()

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.db.parent.glob(self.db.name + "*") if p.is_file())

    def audit_rows(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT COUNT(*) FROM audit_auditentry").fetchone()[0]


def ms(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return (time.perf_counter() - start) * 1000


def run(args: argparse.Namespace, tmp: Path) -> list[dict]:
    rows: list[dict] = []

    def row(name: str, value: float, unit: str = "ms", **extra) -> None:
        rows.append({"measure": name, "value": round(value, 1), "unit": unit, **extra})

    with Console(tmp) as c:
        other = c.call("POST", "/api/v1/rulesets/", {"name": "unrelated"})["id"]
        users = c.call("POST", "/api/v1/rulesets/", {"name": "uses-big"})["id"]
        size0, audit0 = c.db_bytes(), c.audit_rows()
        members = [literal(i) for i in range(args.members)]
        t = ms(
            lambda: c.call("POST", "/api/v1/address-groups/", {"name": "big", "members": members})
        )
        row("create group (POST)", t, audit_rows=c.audit_rows() - audit0)
        group = c.call("GET", "/api/v1/address-groups/?name=big")["results"][0]["id"]
        c.call(
            "POST",
            f"/api/v1/rulesets/{users}/rules/bulk/",
            {"create": [{"sources": ["big"], "protocol": "tcp", "dports": ["22"]}]},
        )
        size_created = c.db_bytes()

        times = []
        for i in range(args.samples):
            body = {"ruleset": other, "protocol": "tcp", "dports": [str(1000 + i)]}
            times.append(ms(lambda body=body: c.call("POST", "/api/v1/rules/", body)))
        row("unrelated rule write p50", statistics.median(times), samples=len(times))
        row("unrelated rule write max", max(times), samples=len(times))

        legacy = c.api.get(f"{c.base}/api/v1/address-groups/{group}/members/").status_code == 404
        state = list(members)  # what the group holds, for the full-list writes
        for name, step in (
            ("add one member (PATCH)", lambda i: ("add", literal(args.members + i))),
            ("remove one member (PATCH)", lambda i: ("remove", literal(i * 7))),
        ):
            times, audit = [], []
            for i in range(args.samples):
                verb, member = step(i)
                if verb == "add":
                    state.append(member)
                else:
                    state.remove(member)
                before = c.audit_rows()
                diff = {verb: [member]}
                times.append(ms(lambda diff=diff: change(c, group, diff, state, legacy)))
                audit.append(c.audit_rows() - before)
            row(name, statistics.median(times), samples=len(times), audit_rows=max(audit))
        state[0] = literal(args.members * 2)
        before = c.audit_rows()
        t = ms(lambda: change(c, group, None, state, legacy))
        row("replace list, one swapped (PUT)", t, audit_rows=c.audit_rows() - before)

        half = args.members // 2
        if not legacy:
            row(
                "members page (limit 100, middle)",
                ms(
                    lambda: c.call(
                        "GET", f"/api/v1/address-groups/{group}/members/?limit=100&offset={half}"
                    )
                ),
            )
        row(
            "group detail (all members)",
            ms(lambda: c.call("GET", f"/api/v1/address-groups/{group}/")),
        )
        row("export (json)", ms(lambda: c.call("GET", "/api/v1/policy/export/?format=json")))
        for name, path in (
            ("rule set editor", f"/rulesets/{users}/"),
            ("rule set preview", f"/rulesets/{users}/preview/"),
            ("group page (dashboard)", f"/objects/address-groups/{group}/"),
            ("group list (dashboard)", "/objects/address-groups/"),
        ):
            first = ms(lambda path=path: c.page(path))
            warm = [ms(lambda path=path: c.page(path)) for _ in range(3)]
            row(name, statistics.median(warm), first_ms=round(first, 1))
        row("audit_verify", ms(lambda: manage(c.env, "audit_verify")))
        growth = c.db_bytes() - size0
        row("database growth (created)", (size_created - size0) / 1e6, "MB")
        row("database growth (all)", growth / 1e6, "MB")
        row("audit rows (all)", c.audit_rows() - audit0, "rows")
    return rows


def change(c: Console, group: int, diff: dict | None, state: list[str], legacy: bool) -> None:
    """One member change: PATCH …/members/ with the difference (PUT with the whole list when
    `diff` is None); a tree without that endpoint (`legacy`) gets the whole list."""
    if legacy:
        c.call("PATCH", f"/api/v1/address-groups/{group}/", {"members": state})
    elif diff is None:
        c.call("PUT", f"/api/v1/address-groups/{group}/members/", {"members": state})
    else:
        c.call("PATCH", f"/api/v1/address-groups/{group}/members/", diff)


def check(rows: list[dict], members: int) -> None:
    """Mark each row that has a target (growth scaled to 100k members)."""
    for r in rows:
        if r["measure"] == "database growth (created)":
            r["target"] = round(20 * members / 100_000, 1)
        elif r["measure"] in TARGETS and TARGETS[r["measure"]][1] == "ms":
            r["target"] = TARGETS[r["measure"]][0]
        if "target" in r:
            r["ok"] = r["value"] <= r["target"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--label", default="", help="a note stored with the results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rampart-bench-groups-") as tmp:
        rows = run(args, Path(tmp))
    check(rows, args.members)
    print(f"\n{args.members:,}-member address group ({args.label or 'this tree'})")
    print(f"{'measure':<36} {'value':>10} {'unit':<5} {'target':>8}  ok   audit rows")
    for r in rows:
        target = r.get("target", "")
        ok = "" if "ok" not in r else ("yes" if r["ok"] else "NO")
        print(
            f"{r['measure']:<36} {r['value']:>10} {r['unit']:<5} {target!s:>8}  {ok:<4} "
            f"{r.get('audit_rows', '')}"
        )
    record = {
        "bench": "groups",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "members": args.members,
        "samples": args.samples,
        "label": args.label,
        "rows": rows,
    }
    with RESULTS.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return 0 if all(r.get("ok", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
