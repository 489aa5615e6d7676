"""Fleet simulator: N recording agents on loopback behind one console, W Celery workers.

    python bench/fleet.py [--agents 1000] [--workers 1,2,4] [--broker redis|rabbitmq]
                          [--skip-deploy] [--skip-poll] [--port-per-agent]

Agents: `rampart-agent fleet` processes of at most 1,000 agents each (10,000 agents = 10
processes), recording dataplane, loopback. As a real fleet listens, every agent has an
address of its own and the same port (`--spread-hosts`: process k on 127.<k+1>.0.1 and up,
port 18745), so the devices of the fleet get one compiled policy, shared by the workers'
compiles; `--port-per-agent` puts them all on 127.0.0.1 with a port each (the next block
of 1,000 free ports from 10000 up), which makes every device's bundle different (the
agent's port is in its management rule): a fleet of N distinct policies.
Console: PostgreSQL (a fresh database `rpt_bench_<pid>`, dropped afterwards), gunicorn,
and a Celery worker with W processes; broker Redis (db 13) or RabbitMQ (--broker rabbitmq).

For each W it measures:
1. deploy fan-out: one deployment to every agent through the API; devices confirmed per
   second and seconds until the last one is confirmed (apply + commit-confirm);
2. a full poll cycle, twice: every device's status polled through `poll_batch` tasks (the
   batches beat sends): the first after the deploy (full answers: the console stores each
   agent's generation), the second conditional (`since=G`: "unchanged" answers); seconds
   until every device was seen and polls/s;
and for each phase the database and broker load: PostgreSQL commits (pg_stat_database
xact_commit delta) and Redis commands processed (INFO, whole server: other users of the
same Redis add to it; not measured for RabbitMQ).

Prints a table and appends JSON lines to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from deploy import make_database, set_port, wait_deployment  # noqa: E402 - path set above

PG_ADMIN = os.environ.get("RAMPART_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
BROKERS = {
    "redis": os.environ.get("RAMPART_BENCH_REDIS", "redis://127.0.0.1:6379/13"),
    "rabbitmq": os.environ.get("RAMPART_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
}
PER_PROCESS = 1000
BASE_PORT = 10000  # below Linux's ephemeral ports (32768-60999)
SAME_PORT = 18745  # every agent's port with --spread-hosts (each on an address of its own)


def _free_block(start: int, size: int) -> bool:
    """Whether every port of [start, start + size) can be bound on loopback now."""
    for port in range(start, start + size):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def start_fleet(
    n: int, where: list[str], root: Path, console_key: str, stack: ExitStack, *extra: str
) -> subprocess.Popen:
    """One `rampart-agent fleet` process of n recording agents (`where`: its host and port
    options), stopped when `stack` closes; its manifest appears in `root` once ready."""
    from tests.support.deploy import stop_process

    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "rampart_agent.cli", "fleet"),
            *("--count", str(n)),
            *where,
            *("--state-root", str(root), "--console-key", console_key),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    stack.callback(stop_process, proc)
    return proc


def start_fleets(
    count: int, tmp: Path, console_key: str, stack: ExitStack, port_per_agent: bool = False
) -> list[dict]:
    """ceil(count / 1000) `rampart-agent fleet` processes: process k on 127.<k+1>.0.1 and
    up, one port; or (`port_per_agent`) on 127.0.0.1, each on the next block of 1,000 free
    ports from BASE_PORT (a block holding a listener, e.g. RabbitMQ's 25672, is skipped);
    the agents' manifest entries."""
    from tests.support.deploy import wait_ready

    procs = []
    base = BASE_PORT
    for k, start in enumerate(range(0, count, PER_PROCESS)):
        n = min(PER_PROCESS, count - start)
        if port_per_agent:
            while not _free_block(base, n):
                base += PER_PROCESS
            where = ["--host", "127.0.0.1", "--base-port", str(base)]
        else:
            where = ["--host", f"127.{k + 1}.0.1", "--spread-hosts", "--base-port", str(SAME_PORT)]
        root = tmp / f"fleet-{k}"
        proc = start_fleet(n, where, root, console_key, stack, "--confirm-timeout", "120")
        procs.append((proc, root))
        base += PER_PROCESS
    manifest: list[dict] = []
    for k, (proc, root) in enumerate(procs):
        wait_ready(proc, timeout=1800)
        manifest += [
            {**a, "name": f"p{k}-{a['name']}"}
            for a in json.loads((root / "manifest.json").read_text())
        ]
    return manifest


class Load:
    """PostgreSQL commits and Redis commands between two readings."""

    def __init__(self, db_name: str, broker: str) -> None:
        self.db_name, self.broker = db_name, broker

    def read(self) -> tuple[int, int | None]:
        import psycopg

        time.sleep(1.0)  # backends flush their statistics at most once a second
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.db_name,)
            ).fetchone()
        commits = int(row[0]) if row else 0
        if not self.broker.startswith("redis://"):
            return commits, None
        import redis

        info = redis.Redis.from_url(self.broker).info("stats")
        return commits, int(info["total_commands_processed"])

    @staticmethod
    def delta(before: tuple[int, int | None], after: tuple[int, int | None]) -> dict:
        return {
            "pg_commits": after[0] - before[0],
            "redis_commands": None
            if before[1] is None or after[1] is None
            else after[1] - before[1],
        }


def make_devices(manifest: list[dict]):
    from rules.models import Device, DeviceGroup, DeviceMembership
    from tests.support.deploy import make_policy

    make_policy("fleet", ports=(2000,))
    group = DeviceGroup.objects.get(name="fleet-servers")
    devices = Device.objects.bulk_create(
        [
            Device(
                name=a["name"],
                address=a["address"],
                agent_port=a["port"],
                agent_public_key=a["public_key"],
                agent_cert_fingerprint=a["cert_fingerprint"],
                enrolled_at=datetime.now(UTC),
            )
            for a in manifest
        ],
        batch_size=1000,
    )
    DeviceMembership.objects.bulk_create(
        [DeviceMembership(device=d, group=group) for d in devices], batch_size=1000
    )
    return group, [d.pk for d in devices]


def cpu_seconds(marker: str, pgid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by the processes of process group `pgid`, or
    whose command line holds `marker`: the cost of a phase, whatever else loads the machine
    (the wall time depends on the other users of the CPUs; this does not)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if pgid is not None:
                if int(stat[2]) != pgid:
                    continue
            elif marker.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            total += int(stat[11]) + int(stat[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def bench_deploy(console, group, count: int, round_no: int, load: Load, tmp: Path) -> dict:
    from agents.models import DeviceDeployment

    set_port("fleet", 2001 + round_no)
    before = load.read()
    worker_pgid = console.worker.proc.pid
    cpu_before = (cpu_seconds("", worker_pgid), cpu_seconds(f"{tmp}/fleet-"))
    t0 = time.time()
    # a 10,000-device deployment is created in one request: more than the helper's 30 s
    resp = console.api(
        "POST",
        "/api/v1/deployments/",
        json={"device_group": group.pk, "confirm_timeout": 120},
        timeout=1800,
    )
    assert resp.status_code == 202, resp.text
    deployment = resp.json()["id"]
    created = time.time() - t0
    wait_deployment(deployment, 3600)
    rows = DeviceDeployment.objects.filter(deployment_id=deployment)
    states: dict[str, int] = {}
    for state in rows.values_list("state", flat=True):
        states[state] = states.get(state, 0) + 1
    last = max(t.timestamp() for t in rows.values_list("confirmed_at", flat=True) if t)
    seconds = last - t0
    worker_cpu = cpu_seconds("", worker_pgid) - cpu_before[0]
    agents_cpu = cpu_seconds(f"{tmp}/fleet-") - cpu_before[1]
    return {
        "deploy_seconds": round(seconds, 2),
        "deploy_per_s": round(states.get("confirmed", 0) / seconds, 1),
        "deploy_states": states,
        "create_seconds": round(created, 2),  # POST /deployments/ until its 202
        "deploy_load": Load.delta(before, load.read()),
        # CPU ms per device: the workers (all processes), the agents' processes
        "deploy_cpu_ms": {
            "worker": round(1000 * worker_cpu / count, 1),
            "agents": round(1000 * agents_cpu / count, 1),
        },
    }


def bench_poll(ids: list[int], batch: int, load: Load, console, tmp: Path) -> dict:
    """Send every device in `poll_batch` tasks; wait until each was seen after the start.
    CPU ms per poll: the worker processes, the agents' processes (as for the deploy)."""
    from django.utils import timezone

    from agents import enqueue
    from rules.models import Device

    before = load.read()
    worker_pgid = console.worker.proc.pid
    cpu_before = (cpu_seconds("", worker_pgid), cpu_seconds(f"{tmp}/fleet-"))
    start = timezone.now()
    t0 = time.time()
    enqueue.poll_batches([ids[i : i + batch] for i in range(0, len(ids), batch)])
    seen = 0
    while time.time() - t0 < 3600:
        seen = Device.objects.filter(pk__in=ids, last_seen_at__gte=start).count()
        offline = Device.objects.filter(pk__in=ids, status="offline").count()
        if seen + offline >= len(ids):
            break
        time.sleep(0.2)
    seconds = time.time() - t0
    time.sleep(1.0)  # the last batch's task finishes after its last device was seen
    worker_cpu = cpu_seconds("", worker_pgid) - cpu_before[0]
    agents_cpu = cpu_seconds(f"{tmp}/fleet-") - cpu_before[1]
    return {
        "seconds": round(seconds, 2),
        "polls_per_s": round(len(ids) / seconds, 1),
        "seen": seen,
        "load": Load.delta(before, load.read()),
        "cpu_ms": {
            "worker": round(1000 * worker_cpu / len(ids), 2),
            "agents": round(1000 * agents_cpu / len(ids), 2),
        },
        "loadavg": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--broker", choices=sorted(BROKERS), default="redis")
    parser.add_argument("--batch", type=int, default=50, help="devices per poll task")
    parser.add_argument(
        "--skip-deploy", action="store_true", help="poll cycles only (agents hold no policy)"
    )
    parser.add_argument("--skip-poll", action="store_true", help="deploy fan-out only")
    parser.add_argument(
        "--port-per-agent",
        action="store_true",
        help="all agents on 127.0.0.1, a port each: every device a bundle of its own",
    )
    args = parser.parse_args()
    workers = [int(x) for x in args.workers.split(",") if x]
    broker = BROKERS[args.broker]

    tmp = Path(tempfile.mkdtemp(prefix="rpt_bench_fleet_"))
    results: list[dict] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)  # last: after every process
        db_url, db_label = make_database("postgres", tmp, stack)
        os.environ.update(
            {
                "DATABASE_URL": db_url,
                "CELERY_BROKER_URL": broker,
                "RAMPART_VAR_DIR": str(tmp / "var"),
                "RAMPART_CONSOLE_KEY_FILE": str(tmp / "console-key.pem"),
                # the queue console_stack gives its worker: this process sends polls there
                "RAMPART_CELERY_QUEUE": f"rpt-deploy-test-{os.getpid()}-{tmp.name}",
                "DJANGO_SETTINGS_MODULE": "console.settings",
            }
        )
        if broker.startswith("redis://"):
            os.environ["REDIS_URL"] = broker
        import django

        django.setup()
        import console.celery  # noqa: F401 - the app this process sends poll tasks with
        from agents.client import console_public_key_b64
        from core.audit.context import audit_context
        from tests.support.deploy import console_stack, free_port

        console = stack.enter_context(
            console_stack(
                tmp,
                db_url,
                broker,
                [f"127.0.0.1:{free_port()}"],
                concurrency=1,
                beat=False,
                RAMPART_CONSOLE_KEY_FILE=os.environ["RAMPART_CONSOLE_KEY_FILE"],
                RAMPART_DEPLOY_MAX_ATTEMPTS="5",
                RAMPART_CONFIRM_TIMEOUT="120",
                **{k: v for k, v in os.environ.items() if k.startswith("RAMPART_DEPLOY_BATCH")},
            )
        )
        print(f"starting {args.agents} agents...", flush=True)
        t_start = time.time()
        manifest = start_fleets(
            args.agents, tmp, console_public_key_b64(), stack, args.port_per_agent
        )
        print(f"  ready in {time.time() - t_start:.0f}s", flush=True)
        load = Load(db_url.rsplit("/", 1)[1], broker)
        meta = {
            "bench": "fleet",
            "agents": args.agents,
            "agent_processes": -(-args.agents // PER_PROCESS),
            "database": db_label,
            "broker": args.broker,
            "poll_batch": args.batch,
            "distinct_policies": args.agents if args.port_per_agent else 1,
            "deploy_batch": int(os.environ.get("RAMPART_DEPLOY_BATCH", 25)),
            "deploy_batch_threads": int(os.environ.get("RAMPART_DEPLOY_BATCH_THREADS", 8)),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": round(os.getloadavg()[0], 2),
        }
        with audit_context(actor="system:bench", channel="system"):
            group, ids = make_devices(manifest)
            for i, n in enumerate(workers):
                console.start_worker(concurrency=n)
                row = {**meta, "workers": n}
                if not args.skip_deploy:
                    print(f"{args.agents} agents, {n} worker process(es): deploy...", flush=True)
                    row |= bench_deploy(console, group, len(ids), i, load, tmp)
                    print(
                        f"  deploy {row['deploy_seconds']}s (created in {row['create_seconds']}s)"
                        f" {row['deploy_states']}, CPU ms per "
                        f"device {row['deploy_cpu_ms']}",
                        flush=True,
                    )
                if not args.skip_poll:
                    row["poll_full"] = bench_poll(ids, args.batch, load, console, tmp)
                    row["poll_conditional"] = bench_poll(ids, args.batch, load, console, tmp)
                    print(
                        f"  poll full {row['poll_full']['seconds']}s "
                        f"(CPU ms per poll {row['poll_full']['cpu_ms']}), conditional "
                        f"{row['poll_conditional']['seconds']}s "
                        f"({row['poll_conditional']['cpu_ms']})",
                        flush=True,
                    )
                results.append(row)

    at = datetime.now(UTC).isoformat(timespec="seconds")
    print()
    head = (
        f"{'agents':>7} {'broker':>8} {'W':>3} {'deploy s':>9} {'dev/s':>7} {'pg commits':>11}"
        f" {'pg/dev':>7}"
        f" {'poll s':>7} {'polls/s':>8} {'cond s':>7} {'cond/s':>7} {'pg/poll':>8} {'redis/poll':>10}"
    )
    print(head)
    no_poll = {"seconds": 0.0, "polls_per_s": 0.0, "load": {"pg_commits": 0, "redis_commands": 0}}
    skipped = {
        "deploy_seconds": 0.0,
        "deploy_per_s": 0.0,
        "deploy_load": {"pg_commits": 0},
        "poll_full": no_poll,
        "poll_conditional": no_poll,
    }
    for row in results:
        r = {**skipped, **row}  # --skip-deploy/--skip-poll: zeros in the table, not in the JSON
        full, cond = r["poll_full"], r["poll_conditional"]
        redis_cmds = cond["load"]["redis_commands"]
        per_poll = "n/a" if redis_cmds is None else f"{redis_cmds / r['agents']:.2f}"
        print(
            f"{r['agents']:>7} {r['broker']:>8} {r['workers']:>3} {r['deploy_seconds']:>9.1f}"
            f" {r['deploy_per_s']:>7.1f} {r['deploy_load']['pg_commits']:>11}"
            f" {r['deploy_load']['pg_commits'] / r['agents']:>7.1f}"
            f" {full['seconds']:>7.1f} {full['polls_per_s']:>8.1f}"
            f" {cond['seconds']:>7.1f} {cond['polls_per_s']:>7.1f}"
            f" {cond['load']['pg_commits'] / r['agents']:>8.2f}"
            f" {per_poll:>10}"
        )
    print(f"\n(load average at start {meta['loadavg_at_start']} on {meta['cpus']} CPUs)")
    with (ROOT / "bench" / "results.jsonl").open("a") as fh:
        for r in results:
            fh.write(json.dumps({**r, "at": at}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
