"""CPU per status poll, on both sides: the console's poll batch and the agents answering.

    python bench/poll_cost.py [--agents 300] [--database postgres|sqlite] [--profile FILE]

One `rampart-agent fleet` process of N agents (recording dataplane, 127.200.0.1 and up,
one port), a fresh database (PostgreSQL `rpt_bench_<pid>` or a SQLite file), and the poll
batches run here, in this process (`status_poll_batch`, as the `poll_batch` task runs them),
so their CPU is this process's and the agents' is their process's. Cycles, each over the
whole fleet in batches of 50:

- first: every device offline and unplaced (audited online, its poll row made);
- full: generations forgotten, so every agent answers in full (the cost of every poll
  after a fleet-wide deploy); devices already online;
- conditional: `since=G` within the agents' 30 s recheck window ("unchanged", no kernel
  read);
- conditional-recheck: the same after 31 s: each agent reads its kernel again, digests,
  and still answers "unchanged" (the steady state when the interval exceeds 30 s).

CPU ms per poll: this process (console), the agents' process, and PostgreSQL's backends
(when on PostgreSQL). `--profile` writes the cProfile of one batch of each cycle.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from deploy import make_database  # noqa: E402 - path set above
from fleet import cpu_seconds, make_devices, start_fleet  # noqa: E402

BATCH = 50
spy_prefix = "/tmp/rpt_pollspy"


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_cycle(
    name: str, ids: list[int], agents_pid: int, db_marker: str | None, prof, spy: str | None
) -> dict:
    from agents.services import status_poll_batch

    spying = None
    if spy:  # py-spy on the agents' process: where their CPU goes (collapsed stacks)
        spying = subprocess.Popen(
            [
                spy,
                "record",
                "--nonblocking",
                "-p",
                str(agents_pid),
                "-f",
                "raw",
                "-r",
                "200",
                "-o",
                f"{spy_prefix}.{name}.txt",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)

    batches = [ids[i : i + BATCH] for i in range(0, len(ids), BATCH)]
    agent0 = cpu_seconds("", agents_pid)
    db0 = cpu_seconds(db_marker) if db_marker else 0.0
    cpu0, t0 = _self_cpu(), time.perf_counter()
    kinds: dict[str, int] = {}
    for k, batch in enumerate(batches):
        if prof is not None and k == 1:
            prof.enable()
        for r in status_poll_batch(device_ids=batch):
            kind = "unchanged" if r.get("unchanged") else str(r.get("status"))
            kinds[kind] = kinds.get(kind, 0) + 1
        if prof is not None and k == 1:
            prof.disable()
    wall, cpu = time.perf_counter() - t0, _self_cpu() - cpu0
    time.sleep(0.5)  # the agents' last threads finish their accounting
    agents = cpu_seconds("", agents_pid) - agent0
    if spying is not None:
        spying.send_signal(2)
        spying.wait(30)
    db = (cpu_seconds(db_marker) - db0) if db_marker else None
    n = len(ids)
    return {
        "cycle": name,
        "polls": n,
        "answers": kinds,
        "wall_s": round(wall, 2),
        "console_ms": round(1000 * cpu / n, 2),
        "agent_ms": round(1000 * agents / n, 2),
        "db_ms": None if db is None else round(1000 * db / n, 2),
        "loadavg": round(os.getloadavg()[0], 2),
    }


def deploy_all(ids: list[int], rules: int) -> float:
    """Give the fleet's rule set `rules` more rules and deploy it to every device here,
    in this process (the worker's own service, device by device); seconds taken."""
    from agents import services
    from agents.models import DeviceDeployment
    from rules import services as rules_services
    from rules.models import RuleSet

    ruleset = RuleSet.objects.get(name="fleet")
    for i in range(rules):
        rules_services.rule_create(
            ruleset=ruleset,
            data={
                "chain": "input",
                "action": "accept",
                "protocol": "tcp",
                "dports": [str(3000 + i)],
                "sources": [f"198.18.{i // 250}.{i % 250 + 1}"],
            },
        )
    t0 = time.perf_counter()
    deployment = services.deploy_create(devices=ids, confirm_timeout=0)
    while True:
        queued = list(
            DeviceDeployment.objects.filter(deployment=deployment, state="queued").values_list(
                "pk", flat=True
            )
        )
        if not queued:
            return time.perf_counter() - t0
        for pk in queued:
            services.device_deployment_run(device_deployment_id=pk)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--profile", help="write the cProfile of one batch per cycle here")
    parser.add_argument(
        "--deploy", type=int, metavar="RULES", help="first deploy a policy of RULES more rules"
    )
    parser.add_argument("--spy", help="path of py-spy: sample the agents' process per cycle")
    parser.add_argument("--label", default="", help="a note stored with the JSON line")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rpt_bench_pollcost_"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        db_url, db_label = make_database(args.database, tmp, stack)
        os.environ.update(
            {
                "DATABASE_URL": db_url,
                "CELERY_BROKER_URL": "memory://",
                "RAMPART_VAR_DIR": str(tmp / "var"),
                "RAMPART_CONSOLE_KEY_FILE": str(tmp / "console-key.pem"),
                "DJANGO_SETTINGS_MODULE": "console.settings",
            }
        )
        import django

        django.setup()
        from agents.client import console_public_key_b64
        from agents.models import DevicePoll
        from core.audit.context import audit_context
        from tests.support.deploy import wait_ready

        where = ["--host", "127.200.0.1", "--spread-hosts", "--base-port", "18746"]
        proc = start_fleet(args.agents, where, tmp / "fleet", console_public_key_b64(), stack)
        wait_ready(proc, timeout=600)
        manifest = json.loads((tmp / "fleet" / "manifest.json").read_text())
        db_marker = f"{db_url.rsplit('/', 1)[1]} " if db_label == "postgresql" else None
        prof = cProfile.Profile(time.process_time) if args.profile else None
        rows = []
        with audit_context(actor="system:bench", channel="system"):
            _, ids = make_devices(manifest)
            if args.deploy is not None:
                print(f"deployed in {deploy_all(ids, args.deploy):.1f}s", flush=True)
            rows.append(run_cycle("first", ids, proc.pid, db_marker, None, args.spy))
            DevicePoll.objects.update(generation=None)
            rows.append(run_cycle("full", ids, proc.pid, db_marker, prof, args.spy))
            if prof is not None:
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(45)
                pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
                Path(args.profile + ".full").write_text(out.getvalue())
                prof = cProfile.Profile(time.process_time)
            rows.append(run_cycle("conditional", ids, proc.pid, db_marker, prof, args.spy))
            if prof is not None:
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(45)
                Path(args.profile + ".cond").write_text(out.getvalue())
            time.sleep(31)
            rows.append(run_cycle("conditional-recheck", ids, proc.pid, db_marker, None, args.spy))
    meta = {
        "bench": "poll_cost",
        "database": db_label,
        "label": args.label,
        "agents": args.agents,
        "deployed_rules": args.deploy,
        "cpus": os.cpu_count(),
    }
    print(f"{'cycle':<20} {'wall s':>7} {'console ms':>11} {'agent ms':>9} {'db ms':>7} load")
    with (ROOT / "bench" / "results.jsonl").open("a") as fh:
        for row in rows:
            print(
                f"{row['cycle']:<20} {row['wall_s']:>7} {row['console_ms']:>11}"
                f" {row['agent_ms']:>9} {row['db_ms'] if row['db_ms'] is not None else '-':>7}"
                f" {row['loadavg']}  {row['answers']}"
            )
            fh.write(json.dumps({**meta, **row}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
