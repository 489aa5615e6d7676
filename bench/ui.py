"""UI page times for rule sets of 100 and 10,000 rules, against a real server process.

Builds a throw-away console (its own var dir and SQLite file, migrated, data made through
rules.services), starts gunicorn on a free port, logs in like a browser and times the
pages a network admin opens. Prints a table (the first, cold request and the median of
the warm ones) and appends one JSON line per measurement to bench/results.jsonl. Target (issue 7): a 10,000-rule set opens in under a second.

    .venv/bin/python bench/ui.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.jsonl"
SIZES = (100, 10_000)
PASSWORD = "bench-Rampart-123"

SETUP = """
import django
django.setup()
from django.contrib.auth.models import Group, User
from rules import services
from rules.models import AddressObject, RuleSet, Service
from rules.models import Device, DeviceRuleSet
user = User.objects.create_user("bench", password={password!r})
user.groups.add(Group.objects.get(name="operator"))
services.object_save(AddressObject(name="office", value="198.18.0.0/24"))
services.object_save(Service(name="https", protocol="tcp", ports=["443"]))
for size in {sizes!r}:
    rs = services.object_save(RuleSet(name=f"bench-{{size}}"))
    services.rules_bulk(ruleset=rs, create=[
        {{"action": "accept" if i % 3 else "drop",
          "sources": ["office"] if i % 7 == 0 else [f"198.18.{{i // 250 % 256}}.{{i % 250 + 1}}"],
          "services": ["https"] if i % 5 == 0 else [],
          **({{}} if i % 5 == 0 else {{"protocol": "tcp", "dports": [str(1000 + i % 5000)]}}),
          "comment": f"rule {{i + 1}}"}} for i in range(size)])
    d = Device.objects.create(name=f"bench-{{size}}", address="198.18.0.2")
    DeviceRuleSet.objects.create(device=d, ruleset=rs)
print(",".join(str(rs.pk) for rs in RuleSet.objects.order_by("pk")))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict) -> str:
    return subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout


def timed(
    session: requests.Session, url: str, repeat: int, headers: dict | None = None
) -> tuple[float, list[float]]:
    """The first (cold) request's time, then `repeat` warm ones, in milliseconds."""
    start = time.perf_counter()
    session.get(url, headers=headers, timeout=120).raise_for_status()
    first = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = session.get(url, headers=headers, timeout=60)
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return first, times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="rampart-bench-ui-") as tmp:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RAMPART_", "DATABASE_URL", "REDIS_URL", "CELERY_"))
        }
        env.update(
            RAMPART_VAR_DIR=tmp,
            DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3",
            DEBUG="0",
            DJANGO_SETTINGS_MODULE="console.settings",
            CELERY_BROKER_URL="memory://",
        )
        t0 = time.perf_counter()
        run([python, "manage.py", "migrate", "-v0"], env)
        run([python, "manage.py", "createcachetable", "-v0"], env)
        run([python, "manage.py", "collectstatic", "--noinput", "-v0"], env)
        pks = [
            int(p)
            for p in run([python, "-c", SETUP.format(password=PASSWORD, sizes=SIZES)], env).split(
                ","
            )
        ]
        print(
            f"setup: {len(SIZES)} rule sets ({', '.join(map(str, SIZES))} rules) in {time.perf_counter() - t0:.1f}s"
        )
        port = free_port()
        server = subprocess.Popen(
            [
                str(Path(python).parent / "gunicorn"),
                "console.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "2",
                "--no-control-socket",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            session = requests.Session()
            deadline = time.monotonic() + 60
            while True:
                try:
                    session.get(f"{base}/login/", timeout=10)
                    break
                except (requests.ConnectionError, requests.Timeout):
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("gunicorn did not start") from None
                    time.sleep(0.2)
            session.post(
                f"{base}/login/",
                data={
                    "username": "bench",
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": session.cookies["csrftoken"],
                },
                headers={"Referer": f"{base}/login/"},
                timeout=30,
            ).raise_for_status()
            htmx = {"HX-Request": "true", "HX-Target": "rules-table"}
            rows = []
            for size, pk in zip(SIZES, pks, strict=True):
                editor = f"{base}/rulesets/{pk}/"
                last = (size + 99) // 100
                pages = [
                    ("editor, first page", editor, None),
                    ("editor, last page (htmx)", f"{editor}?page={last}", htmx),
                    ("editor, 500 per page", f"{editor}?per=500&page=2", htmx),
                    ("search 'office'", f"{editor}?q=office", htmx),
                    ("filter action=drop", f"{editor}?action=drop", htmx),
                    ("compiled preview + diff", f"{base}/rulesets/{pk}/preview/", None),
                ]
                for name, url, headers in pages:
                    first, times = timed(session, url, args.repeat, headers)
                    rows.append(
                        {
                            "bench": "ui",
                            "page": name,
                            "rules": size,
                            "repeat": args.repeat,
                            "first_ms": round(first, 1),
                            "median_ms": round(statistics.median(times), 1),
                            "max_ms": round(max(times), 1),
                        }
                    )
            for name, path in (
                ("overview", "/"),
                ("devices", "/devices/"),
                ("objects", "/objects/addresses/"),
            ):
                first, times = timed(session, base + path, args.repeat)
                rows.append(
                    {
                        "bench": "ui",
                        "page": name,
                        "rules": sum(SIZES),
                        "repeat": args.repeat,
                        "first_ms": round(first, 1),
                        "median_ms": round(statistics.median(times), 1),
                        "max_ms": round(max(times), 1),
                    }
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
    stamp = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(f"\n{'page':<28} {'rules':>7} {'first ms':>9} {'median ms':>10} {'max ms':>8}")
    print("-" * 66)
    for row in rows:
        flag = "  < 1 s" if row["median_ms"] < 1000 else "  SLOW"
        print(
            f"{row['page']:<28} {row['rules']:>7} {row['first_ms']:>9.1f} {row['median_ms']:>10.1f} "
            f"{row['max_ms']:>8.1f}{flag}"
        )
    with RESULTS.open("a") as out:
        for row in rows:
            out.write(json.dumps({**row, **stamp}) + "\n")
    print(f"\nappended {len(rows)} lines to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
