"""Deployment pipeline benchmark: the whole console in processes, as in production.

    python bench/deploy.py [--runs 50] [--fleet 100,1000] [--workers 1,2,4] [--database auto|sqlite|postgres]

1. Latency, one device: from the API call (POST /api/v1/deployments/ to gunicorn) until the
   agent has the rules in the kernel (the console stamps `applied` when the agent's signed
   answer arrives; the agent answers after iptables-restore returned), p50/p99 over --runs
   deploys, each a real policy change, next to the agent's own apply time (`apply_ms`).
   pipeline overhead = end-to-end − apply_ms               (target: ≤ 150 ms at p50)
   The agent is `rampart-agent serve` with the nft backend in an rpt_ namespace (root), or
   the recording dataplane on loopback otherwise (the table says which).
2. Fan-out: 100 and 1,000 agents (`rampart-agent fleet`, recording dataplane, loopback) in
   one group, one deployment each, with 1, 2 and 4 Celery worker processes: deploys per
   second from the API call until every device is confirmed (apply + commit-confirm).

Broker: Redis (REDIS_URL or 127.0.0.1:6379/15). Database: PostgreSQL when reachable on
127.0.0.1:5432 (a fresh database, dropped afterwards), else a SQLite file. Prints a table
and appends JSON lines to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("RAMPART_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("RAMPART_BENCH_REDIS", "redis://127.0.0.1:6379/15")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def make_database(kind: str, tmp: Path, stack: ExitStack) -> tuple[str, str]:
    """(url, label): a fresh, migrated database for this run."""
    from tests.support.deploy import migrate_file_db, worker_env

    if kind in ("auto", "postgres"):
        try:
            import psycopg

            name = f"rpt_bench_{os.getpid()}"
            with psycopg.connect(PG_ADMIN, connect_timeout=3, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")
                conn.execute(f"CREATE DATABASE {name}")

            def drop() -> None:
                with psycopg.connect(PG_ADMIN, connect_timeout=3, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

            stack.callback(drop)
            url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v0", "--skip-checks"],
                cwd=ROOT,
                env=worker_env(url, "memory://", tmp / "var"),
                check=True,
                timeout=300,
            )
            return url, "postgresql"
        except Exception as exc:  # noqa: BLE001 - fall back to SQLite, say so
            if kind == "postgres":
                raise
            print(
                f"PostgreSQL not usable ({exc.__class__.__name__}); using SQLite", file=sys.stderr
            )
    return migrate_file_db(tmp / "bench.sqlite3"), "sqlite"


def set_port(ruleset_name: str, port: int) -> None:
    """A real policy change: the rule set's first rule now opens `port`."""
    from rules.models import Rule

    Rule.objects.filter(ruleset__name=ruleset_name).update(dports=[str(port)])


def wait_deployment(deployment_id: int, timeout: float) -> None:
    from agents.choices import TERMINAL_STATES
    from agents.models import DeviceDeployment

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            not DeviceDeployment.objects.filter(deployment_id=deployment_id)
            .exclude(state__in=TERMINAL_STATES)
            .exists()
        ):
            return
        time.sleep(0.01)
    raise TimeoutError(f"deployment {deployment_id} not finished in {timeout}s")


# --- 1. latency ---------------------------------------------------------------------------------


def bench_latency(console, tmp: Path, runs: int, ns_pair) -> dict:
    from agents.models import DeviceDeployment
    from rules.models import Device
    from tests.support.deploy import make_policy, serve_agent_cmd, wait_ready

    state = tmp / "lat-agent"
    if ns_pair is not None:
        server, console_addr, agent_addr = ns_pair
        proc = server.popen(
            *serve_agent_cmd(state, f"{agent_addr}:8745", "nft", confirm_timeout=30),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        where, address, port, mgmt = "netns, nft", agent_addr, 8745, [console_addr]
        console_url = f"http://{console_addr}:{console.api_url.rsplit(':', 1)[1]}"
    else:
        from tests.support.deploy import free_port

        port = free_port()
        proc = subprocess.Popen(
            serve_agent_cmd(state, f"127.0.0.1:{port}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        console.procs.append(proc)
        where, address, mgmt, console_url = "loopback, recording", "127.0.0.1", [], console.api_url
    wait_ready(proc)
    _, group = make_policy("lat", ports=(1000,))
    device = Device.objects.create(
        name="lat-1", address=address, agent_port=port, management_sources=mgmt
    )
    device.groups.add(group)
    console.enroll(device.pk, state, port, console_url, ns=ns_pair[0] if ns_pair else None)
    console.wait_done(console.deploy(devices=[device.pk]))  # warm: first TLS handshake, caches
    e2e, confirmed, apply_ms = [], [], []
    stages: dict[str, list[float]] = {
        "api→queued": [],
        "queued→compiling": [],
        "compiling→pushing": [],
        "pushing→applied": [],
    }
    for i in range(runs):
        set_port("lat", 1001 + i)
        t0 = time.time()
        deployment = console.deploy(devices=[device.pk], confirm_timeout=30)
        wait_deployment(deployment, 60)
        dd = DeviceDeployment.objects.get(deployment_id=deployment)
        if dd.state != "confirmed":
            raise RuntimeError(f"run {i}: {dd.state} {dd.error}")
        e2e.append((dd.applied_at.timestamp() - t0) * 1000)
        confirmed.append((dd.confirmed_at.timestamp() - t0) * 1000)
        apply_ms.append(float(dd.agent_response.get("apply_ms") or 0))
        at = {t["state"]: datetime.fromisoformat(t["at"]).timestamp() for t in dd.transitions}
        marks = [t0, at["queued"], at["compiling"], at["pushing"], at["applied"]]
        for key, a, b in zip(stages, marks, marks[1:], strict=False):
            stages[key].append((b - a) * 1000)
    if ns_pair is not None:
        assert f"--dport {1000 + runs}" in ns_pair[0].run("iptables-nft-save").stdout, (
            "rules not in the kernel"
        )
    overhead = [a - b for a, b in zip(e2e, apply_ms, strict=True)]
    return {
        "case": "latency",
        "agent": where,
        "runs": runs,
        "e2e_p50_ms": round(pct(e2e, 50), 1),
        "e2e_p99_ms": round(pct(e2e, 99), 1),
        "apply_p50_ms": round(pct(apply_ms, 50), 1),
        "apply_p99_ms": round(pct(apply_ms, 99), 1),
        "overhead_p50_ms": round(statistics.median(overhead), 1),
        "overhead_p99_ms": round(pct(overhead, 99), 1),
        "confirmed_p50_ms": round(pct(confirmed, 50), 1),
        "target_overhead_p50_ms": 150,
        "stages_p50_ms": {k: round(statistics.median(v), 1) for k, v in stages.items()},
    }


# --- 2. fan-out -----------------------------------------------------------------------------------


def start_fleet(count: int, tmp: Path, console_key: str) -> tuple[subprocess.Popen, list[dict]]:
    import random

    root = tmp / f"fleet-{count}"
    base = random.randrange(21000, 60000 - count)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rampart_agent.cli",
            "fleet",
            "--count",
            str(count),
            "--base-port",
            str(base),
            "--host",
            "127.0.0.1",
            "--state-root",
            str(root),
            "--console-key",
            console_key,
            "--confirm-timeout",
            "60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    from tests.support.deploy import stop_process, wait_ready

    try:
        wait_ready(proc, timeout=900)
    except BaseException:
        stop_process(proc)
        raise
    return proc, json.loads((root / "manifest.json").read_text())


def bench_fanout(
    console, tmp: Path, count: int, workers: list[int], console_key: str
) -> list[dict]:
    from rules.models import Device, DeviceGroup, DeviceMembership, DeviceRuleSet, RuleSet
    from tests.support.deploy import make_policy, stop_process

    proc, manifest = start_fleet(count, tmp, console_key)
    try:
        name = f"fan{count}"
        make_policy(name, ports=(2000,))
        group = DeviceGroup.objects.get(name=f"{name}-servers")
        devices = Device.objects.bulk_create(
            [
                Device(
                    name=f"{name}-{a['name']}",
                    address=a["address"],
                    agent_port=a["port"],
                    agent_public_key=a["public_key"],
                    agent_cert_fingerprint=a["cert_fingerprint"],
                    enrolled_at=datetime.now(UTC),
                )
                for a in manifest
            ]
        )
        DeviceMembership.objects.bulk_create(
            [DeviceMembership(device=d, group=group) for d in devices]
        )
        assert DeviceRuleSet.objects.count() >= 0 and RuleSet.objects.filter(name=name).exists()
        out = []
        for i, n in enumerate(workers):
            console.start_worker(concurrency=n)
            set_port(name, 2001 + i)
            t0 = time.time()
            deployment = console.deploy(device_group=group.pk, confirm_timeout=60)
            wait_deployment(deployment, 1800)
            elapsed = time.time() - t0
            from agents.models import DeviceDeployment

            states: dict[str, int] = {}
            for state in DeviceDeployment.objects.filter(deployment_id=deployment).values_list(
                "state", flat=True
            ):
                states[state] = states.get(state, 0) + 1
            out.append(
                {
                    "case": "fan-out",
                    "agents": count,
                    "workers": n,
                    "seconds": round(elapsed, 2),
                    "deploys_per_s": round(count / elapsed, 1),
                    "states": states,
                }
            )
            print(
                f"  fan-out {count} agents, {n} worker(s): {count / elapsed:.1f} deploys/s {states}",
                flush=True,
            )
        return out
    finally:
        stop_process(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--fleet", default="100,1000")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--database", choices=["auto", "sqlite", "postgres"], default="auto")
    args = parser.parse_args()
    fleets = [int(x) for x in args.fleet.split(",") if x]
    workers = [int(x) for x in args.workers.split(",") if x]

    tmp = Path(tempfile.mkdtemp(prefix="rpt_bench_deploy_"))
    results: list[dict] = []
    with ExitStack() as stack:
        stack.callback(
            shutil.rmtree, tmp, ignore_errors=True
        )  # runs last: after every process stopped
        db_url, db_label = make_database(args.database, tmp, stack)
        os.environ["DATABASE_URL"] = db_url
        os.environ["RAMPART_VAR_DIR"] = str(tmp / "var")
        os.environ["RAMPART_CONSOLE_KEY_FILE"] = str(tmp / "console-key.pem")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
        import django

        django.setup()
        from agents.client import console_public_key_b64
        from core.audit.context import audit_context
        from tests.support.deploy import console_stack, free_port
        from tests.support.netns import host_pair, sh

        ns_pair = None
        binds = [f"127.0.0.1:{free_port()}"]
        if os.geteuid() == 0:
            _, server = stack.enter_context(host_pair("dpb"))
            n = (os.getpid() + 97) % 250 + 1
            root_if, ns_if = f"rpbr{n}", f"rpbs{n}"
            sh(
                "ip",
                "link",
                "add",
                root_if,
                "type",
                "veth",
                "peer",
                "name",
                ns_if,
                "netns",
                server.name,
            )
            stack.callback(sh, "ip", "link", "delete", root_if, check=False)
            console_addr, agent_addr = f"198.19.{n}.1", f"198.19.{n}.2"
            sh("ip", "addr", "add", f"{console_addr}/30", "dev", root_if)
            sh("ip", "link", "set", root_if, "up")
            server.run("ip", "addr", "add", f"{agent_addr}/30", "dev", ns_if)
            server.run("ip", "link", "set", ns_if, "up")
            ns_pair = (server, console_addr, agent_addr)
            binds.append(f"{console_addr}:{binds[0].rsplit(':', 1)[1]}")
        console = stack.enter_context(
            console_stack(
                tmp,
                db_url,
                REDIS,
                binds,
                concurrency=1,
                beat=False,
                RAMPART_CONSOLE_KEY_FILE=os.environ["RAMPART_CONSOLE_KEY_FILE"],
                RAMPART_DEPLOY_MAX_ATTEMPTS="5",
            )
        )
        meta = {
            "bench": "deploy",
            "database": db_label,
            "broker": "redis",
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": round(os.getloadavg()[0], 2),
        }
        with audit_context(actor="system:bench", channel="system"):
            print(f"latency: {args.runs} deploys to one device ({db_label}, redis)...", flush=True)
            results.append(bench_latency(console, tmp, args.runs, ns_pair))
            for count in fleets:
                print(f"fan-out: {count} agents...", flush=True)
                results += bench_fanout(console, tmp, count, workers, console_public_key_b64())

    at = datetime.now(UTC).isoformat(timespec="seconds")
    print()
    lat = results[0]
    print(f"{'end-to-end (API call → rules in kernel), ' + lat['agent']:<58} {'p50':>9} {'p99':>9}")
    print(f"{'  API → applied':<58} {lat['e2e_p50_ms']:>7.1f}ms {lat['e2e_p99_ms']:>7.1f}ms")
    print(
        f"{'  agent apply_ms (its own apply time)':<58} {lat['apply_p50_ms']:>7.1f}ms {lat['apply_p99_ms']:>7.1f}ms"
    )
    ok = "OK" if lat["overhead_p50_ms"] <= 150 else "MISSED"
    print(
        f"{'  pipeline overhead (target p50 ≤ 150 ms: ' + ok + ')':<58} {lat['overhead_p50_ms']:>7.1f}ms "
        f"{lat['overhead_p99_ms']:>7.1f}ms"
    )
    print(f"{'  API → confirmed (commit-confirmed done)':<58} {lat['confirmed_p50_ms']:>7.1f}ms")
    for stage, ms in lat["stages_p50_ms"].items():
        print(f"{'    stage ' + stage:<58} {ms:>7.1f}ms")
    print()
    print(
        f"{'fan-out (recording agents, loopback)':<40} {'workers':>8} {'seconds':>9} {'deploys/s':>10}"
    )
    for r in results[1:]:
        print(
            f"{str(r['agents']) + ' agents':<40} {r['workers']:>8} {r['seconds']:>9.2f} {r['deploys_per_s']:>10.1f}"
        )
    print(
        f"\n(load average at start {meta['loadavg_at_start']} on {meta['cpus']} CPUs; database {db_label})"
    )
    with (ROOT / "bench" / "results.jsonl").open("a") as fh:
        for r in results:
            fh.write(json.dumps({**meta, **r, "at": at}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
