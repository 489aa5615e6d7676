"""Agent apply benchmark against the raw tools, both iptables backends, in rpt_ namespaces.

    python bench/apply.py [--backends legacy,nft] [--sizes 100,1000,10000,50000] [--group 100000]

The bundles are the compiler's, for the policies of bench/policies.py (N realistic rules in
one rule set, which the compiler cuts into segments of at most 1,000; the device's fixed
rules; both families), pushed as the console pushes them. For each backend, in a fresh
namespace, it measures (median of several runs, raw and agent interleaved, each after the
same idle pause):
  1. apply of N rules by the agent (engine.apply as POST /v1/apply runs it: hash check,
     parse, journal, sets, one iptables-restore per family, records; commit-confirmed
     with a 30 s timeout — the confirm that follows, with the fsync of the confirmed
     record, is not timed) next to the raw tools loading the same bundle into the same
     empty namespace: `ipset restore`, `iptables-restore --noflush` of the IPv4 text,
     `ip6tables-restore --noflush` of the IPv6 text          (target: agent <= 1.2x raw)
  2. a 1-rule change (one rule's action flipped) on a device holding the largest N next to
     that full raw load of it                                     (target: >= 15x faster)
  3. a 100k-entry address-group update (one member replaced: a new set named by content,
     the rule re-pointed) next to a raw ipset swap of the same content
                                                                   (target: <= 1.2x raw)
The agent keeps its state on disk and its runtime records on tmpfs (/dev/shm here), as a
packaged agent does (/var/lib/rampart-agent, /run/rampart-agent). Prints a table and
appends JSON lines to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _runs(n: int) -> int:
    return 15 if n <= 1000 else 7 if n <= 10000 else 5


# --- inner: runs inside the namespace --------------------------------------------------------


def compiled(data: dict) -> dict:
    """The bundle the console would push for the document's device."""
    from policies import NOW

    from compiler import PolicyDocument, compile_device

    return compile_device(PolicyDocument.from_dict(data), "bench", now=NOW).to_dict(rules=False)


def inner(backend: str, sizes: list[int], group: int) -> None:
    from policies import big_group, one_rule_changed, realistic

    from rampart_agent.dataplane import IptablesDataplane
    from rampart_agent.engine import Engine
    from rampart_agent.ruleset import Table, plan_table
    from rampart_agent.state import StateDir

    dp = IptablesDataplane(backend)
    cleaner = IptablesDataplane(backend)  # its own runner: leaves the agent's tools waiting
    if backend == "legacy":
        import iptc  # noqa: F401 - warm: a serving agent imported it at start

    # State on disk, runtime records on tmpfs: where a packaged agent keeps them
    # (/var/lib/rampart-agent, and /run/rampart-agent, a tmpfs on systemd hosts).
    tmp = Path(tempfile.mkdtemp(prefix="rpt-bench-", dir="/var/tmp"))
    run = Path(tempfile.mkdtemp(prefix="rpt-bench-", dir="/dev/shm"))
    restore = {
        f: [f"{'ip6' if f == 'v6' else 'ip'}tables-{backend}-restore", "--noflush", "--wait=60"]
        for f in ("v4", "v6")
    }

    def clean() -> None:
        for family in ("v4", "v6"):
            for tname, live in cleaner.read(family).items():
                if live.chains or live.jumps():
                    lines = plan_table(
                        tname,
                        None,
                        Table(tname),
                        live.jumps(),
                        full=True,
                        live_chains=set(live.chains),
                    )
                    cleaner.restore(family, "\n".join(lines) + "\n")
        sets = list(cleaner.ipset_list())
        if sets:
            cleaner.ipset_destroy(sets)

    def timed(fn) -> float:  # noqa: ANN001
        # Both sides start from the same idle pause, as deploys come seconds apart: right
        # after busy work the same restore runs up to 40 % faster (warm caches, clocks),
        # which would favour whichever side happened to follow other work.
        time.sleep(0.05)
        t0 = time.perf_counter()
        fn()
        ms = (time.perf_counter() - t0) * 1000
        confirm_all()  # untimed: the console confirms after its own health check
        return ms

    engines: list[Engine] = []

    def engine() -> Engine:
        if engines:
            engines.pop().shutdown()
        state = StateDir(tempfile.mkdtemp(dir=tmp), tempfile.mkdtemp(dir=run))
        state.ensure_identity()
        e = Engine(state, dp)
        e.start()  # what `serve` does before it answers: not part of any apply
        engines.append(e)
        return e

    def emit(**row) -> None:
        print(json.dumps({"backend": backend, **row}), flush=True)

    def apply(e: Engine, bundle: dict, version: int) -> None:
        """POST /v1/apply as the console sends it; its confirm is not part of the apply."""
        e.apply({"bundle": bundle, "version": version, "confirm_timeout": 30})
        confirms.append((e, version))

    def confirm_all() -> None:
        while confirms:
            e, version = confirms.pop(0)
            e.confirm(version)

    confirms: list = []

    def raw_run(bundle: dict) -> None:
        """What loading the bundle takes with the raw tools alone."""
        if bundle["ipsets"]:
            subprocess.run(
                ["ipset", "restore"],
                input=bundle["ipsets"],
                text=True,
                check=True,
                capture_output=True,
            )
        for family in ("v4", "v6"):
            subprocess.run(
                restore[family],
                input=bundle[f"iptables_{family}"],
                text=True,
                check=True,
                capture_output=True,
            )

    last_engine, last_bundle, raw_full = None, None, {}
    for n in sizes:
        bundle = compiled(realistic(n))
        raw, agent = [], []
        for _ in range(_runs(n)):
            clean()
            raw.append(timed(lambda b=bundle: raw_run(b)))
            clean()
            e = engine()
            agent.append(timed(lambda e=e, b=bundle: apply(e, b, 1)))
            last_engine, last_bundle = e, bundle
        raw_full[n] = statistics.median(raw)
        emit(
            case="apply",
            n=n,
            raw_ms=statistics.median(raw),
            agent_ms=statistics.median(agent),
            ratio=statistics.median(agent) / statistics.median(raw),
            target="<=1.2",
        )

    n = sizes[-1]
    changed = compiled(one_rule_changed(realistic(n)))
    times = []
    version = 1
    for i in range(6):
        version += 1
        b = changed if i % 2 == 0 else last_bundle
        times.append(timed(lambda b=b, v=version: apply(last_engine, b, v)))
    one = statistics.median(times)
    emit(
        case="1-rule change",
        n=n,
        raw_ms=raw_full[n],
        agent_ms=one,
        ratio=raw_full[n] / one,
        target=">=15 (raw full / agent change)",
    )

    clean()
    g = [compiled(big_group(group, last=f"2001:2:1::{k}")) for k in (1, 2, 3)]
    e = engine()
    apply(e, g[0], 1)
    confirm_all()
    meta = g[0]["sets"][next(iter(g[0]["sets"]))]

    def swap_payload(k: int) -> str:
        members = big_group(group, last=f"2001:2:2::{k}")["address_groups"][0]["members"]
        head = (
            f"create bench-tmp hash:net family inet6 hashsize {meta['hashsize']} "
            f"maxelem {meta['maxelem']}\n"
        )
        return (
            head
            + "".join(f"add bench-tmp {m}\n" for m in members)
            + f"swap bench-tmp {target}\ndestroy bench-tmp\n"
        )

    target = "bench-raw"  # not rpt-: the agent destroys rpt- sets it does not know
    subprocess.run(["ipset", "create", target, "hash:net", "family", "inet6"], check=True)
    subprocess.run(["ipset", "restore"], input=swap_payload(0), text=True, check=True)
    raw, agent = [], []
    for k in range(5):  # interleaved, so load changes hit both sides alike
        raw.append(
            timed(
                lambda p=swap_payload(k + 1): subprocess.run(
                    ["ipset", "restore"], input=p, text=True, check=True, capture_output=True
                )
            )
        )
        agent.append(timed(lambda b=g[k % 2 + 1], v=k + 2: apply(e, b, v)))
    emit(
        case="group update",
        n=group,
        raw_ms=statistics.median(raw),
        agent_ms=statistics.median(agent),
        ratio=statistics.median(agent) / statistics.median(raw),
        target="<=1.2",
    )
    clean()
    subprocess.run(["ipset", "destroy", target], check=False)


# --- outer: namespaces, table, results file ----------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="legacy,nft")
    parser.add_argument("--sizes", default="100,1000,10000,50000")
    parser.add_argument("--group", type=int, default=100000)
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    parser.add_argument("--results", default=str(ROOT / "bench" / "results.jsonl"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.inner:
        inner(args.inner, sizes, args.group)
        return 0
    if os.geteuid() != 0:
        print(
            "bench/apply.py: error: needs root (it creates rpt_ network namespaces)",
            file=sys.stderr,
        )
        return 1
    rows = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for backend in args.backends.split(","):
        ns = f"rpt_bench{os.getpid() % 10000}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            proc = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    __file__,
                    "--inner",
                    backend,
                    "--sizes",
                    args.sizes,
                    "--group",
                    str(args.group),
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            rows += [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        finally:
            subprocess.run(["ip", "netns", "delete", ns], check=False)
    load = os.getloadavg()[0]
    print(f"\nrampart-agent apply benchmark ({stamp}, {os.cpu_count()} CPUs, load {load:.1f})")
    print(f"{'backend':8} {'case':14} {'n':>7} {'raw ms':>9} {'agent ms':>9} {'ratio':>7}  target")
    for r in rows:
        print(
            f"{r['backend']:8} {r['case']:14} {r['n']:>7} {r['raw_ms']:>9.1f} "
            f"{r['agent_ms']:>9.1f} {r['ratio']:>7.2f}  {r['target']}"
        )
    with open(args.results, "a") as fh:
        for r in rows:
            fh.write(
                json.dumps(
                    {
                        "bench": "apply",
                        "at": stamp,
                        "host": platform.node(),
                        "cpus": os.cpu_count(),
                        "load": round(load, 2),
                        **r,
                    }
                )
                + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
