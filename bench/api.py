"""API bench: one bulk call creates a 10,000-rule set; then the set is read back in pages.

Runs against a real server process (gunicorn on 127.0.0.1, a fresh temporary database),
with a real token, as CI would. Prints a table and appends one JSON line per database to
bench/results.jsonl. Target: the bulk call under 5 s on a 2-core machine.

    .venv/bin/python bench/api.py                      # SQLite in a temp dir
    .venv/bin/python bench/api.py --postgres           # also PostgreSQL (127.0.0.1:5432)
    .venv/bin/python bench/api.py --rules 2000 --samples 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import RESULTS, Console

TARGET_S = 5.0
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "rampart_bench_api"


def rule_items(count: int) -> list[dict]:
    """A realistic mix: named objects and groups, literals, services, literal ports, states."""
    items = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            items.append(
                {
                    "sources": ["office"],
                    "destinations": ["web-servers"],
                    "services": ["web"],
                    "comment": f"rule {i}",
                }
            )
        elif kind == 1:
            items.append(
                {
                    "sources": [f"198.18.{i % 250}.{i % 200 + 1}"],
                    "protocol": "tcp",
                    "dports": ["22", "8000-8100"],
                    "action": "drop",
                    "states": ["new"],
                }
            )
        elif kind == 2:
            items.append(
                {
                    "chain": "forward",
                    "destinations": [f"198.18.{i % 250}.0/24", "web-1"],
                    "protocol": "udp",
                    "dports": ["53"],
                    "log": True,
                    "log_prefix": "dns ",
                }
            )
        else:
            items.append(
                {
                    "sources": ["2001:2::/48"],
                    "destinations": [f"2001:2::{i:x}"],
                    "services": ["https"],
                    "enabled": i % 8 != 3,
                    "rate_limit": "10/second",
                }
            )
    return items


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far, from /proc."""
    total = 0.0
    for proc in [pid, *children(pid)]:
        fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(label: str, database_url: str, var_dir: Path, args: argparse.Namespace) -> dict:
    with Console(var_dir, database_url=database_url, workers=args.workers, timeout=300) as server:
        server.call("POST", "/api/v1/addresses/", {"name": "office", "value": "198.18.0.0/24"})
        server.call("POST", "/api/v1/addresses/", {"name": "web-1", "value": "198.18.1.10"})
        server.call(
            "POST",
            "/api/v1/address-groups/",
            {"name": "web-servers", "members": ["web-1", "198.18.1.11"]},
        )
        server.call(
            "POST", "/api/v1/services/", {"name": "https", "protocol": "tcp", "ports": ["443"]}
        )
        server.call(
            "POST", "/api/v1/services/", {"name": "http", "protocol": "tcp", "ports": ["80"]}
        )
        server.call(
            "POST", "/api/v1/service-groups/", {"name": "web", "members": ["https", "http"]}
        )
        ruleset = server.call("POST", "/api/v1/rulesets/", {"name": "bench"})
        body = json.dumps({"create": rule_items(args.rules)})

        cpu_before = cpu_seconds(server.proc.pid)
        started = time.perf_counter()
        response = server.api.post(
            f"{server.base}/api/v1/rulesets/{ruleset['id']}/rules/bulk/",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=600,
        )
        bulk_s = time.perf_counter() - started
        bulk_cpu_s = cpu_seconds(server.proc.pid) - cpu_before
        if response.status_code != 200:
            raise RuntimeError(f"bulk: {response.status_code} {response.text[:2000]}")
        created = response.json()["created"]

        # Read everything back, page by page, and check it is all there in order.
        url = f"{server.base}/api/v1/rulesets/{ruleset['id']}/rules/"
        seen, page_times, next_url = [], [], f"{url}?page_size={args.page_size}"
        started = time.perf_counter()
        while next_url:
            t = time.perf_counter()
            page = server.api.get(next_url, timeout=60).json()
            page_times.append(time.perf_counter() - t)
            seen += [row["id"] for row in page["results"]]
            next_url = page["next"]
        readback_s = time.perf_counter() - started
        assert seen == created, "read-back differs from what was created"
        pages = (args.rules + args.page_size - 1) // args.page_size
        rng = random.Random(7)
        for _ in range(args.samples):
            t = time.perf_counter()
            server.api.get(
                f"{url}?page_size={args.page_size}&page={rng.randint(1, pages)}", timeout=60
            )
            page_times.append(time.perf_counter() - t)

    return {
        "bench": "api",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "db": label,
        "rules": args.rules,
        "bulk_create_s": round(bulk_s, 3),
        "bulk_server_cpu_s": round(bulk_cpu_s, 3),
        "target_s": TARGET_S,
        "ok": bulk_s < TARGET_S,
        "page_size": args.page_size,
        "page_reads": len(page_times),
        "page_p50_ms": round(statistics.median(page_times) * 1000, 1),
        "page_p99_ms": round(percentile(page_times, 99) * 1000, 1),
        "readback_all_s": round(readback_s, 3),
        "body_mb": round(len(body) / 1e6, 2),
        "cpus": os.cpu_count(),
        "load1": round(os.getloadavg()[0], 2),
        "workers": args.workers,
    }


def postgres_url() -> str | None:
    """A fresh bench database on the local PostgreSQL, or None when none answers."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB}")
            conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
    except Exception as exc:  # noqa: BLE001 - any failure means: no PostgreSQL here
        print(f"PostgreSQL not available ({exc.__class__.__name__}): skipped", file=sys.stderr)
        return None
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_BENCH_DB}"


def drop_postgres() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument(
        "--samples", type=int, default=200, help="extra random page reads for the percentiles"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--postgres", action="store_true", help="also run against PostgreSQL on 127.0.0.1"
    )
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="rampart-bench-api-") as tmp:
        results.append(run("sqlite", f"sqlite:///{tmp}/bench.sqlite3", Path(tmp), args))
        if args.postgres and (url := postgres_url()):
            try:
                results.append(run("postgresql", url, Path(tmp), args))
            finally:
                drop_postgres()

    header = (
        f"{'db':<11} {'rules':>6} {'bulk create':>12} {'server CPU':>11} {'target':>7} {'page p50':>9} "
        f"{'page p99':>9} {'read all':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['db']:<11} {r['rules']:>6} {r['bulk_create_s']:>11.2f}s {r['bulk_server_cpu_s']:>10.2f}s "
            f"{'<5s ok' if r['ok'] else 'MISSED':>7} "
            f"{r['page_p50_ms']:>7.1f}ms {r['page_p99_ms']:>7.1f}ms {r['readback_all_s']:>8.2f}s"
        )
    print(
        f"(page size {args.page_size}, {results[0]['page_reads']} page reads each; load average "
        f"{results[-1]['load1']} on {results[-1]['cpus']} CPUs; server CPU = gunicorn's CPU time for the "
        "bulk call, what it would take on an idle machine)"
    )
    with RESULTS.open("a") as out:
        for r in results:
            out.write(json.dumps(r) + "\n")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
