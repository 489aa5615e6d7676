"""Compile-time benchmark: the compiler next to the kernel load of its own output.

    sudo .venv/bin/python bench/compile.py [--runs 3] [--sizes 1000,10000,50000] [--sets both]

For 1k/10k/50k realistic rules (70 % tcp / 30 % udp, source CIDRs /24–/32, 20 % with a
destination, single port / range / multiport, 80 % accept — the mix of
shared/reference/README.md — each with its uuid, as the console's database gives them) and for one 100k-entry address group, it times
`PolicyDocument.from_dict` (parse + validate; once per deployment, however many devices),
`compile_device` (resolve, lower, render, hash; once per device) cold — nothing compiled
before in the process — and warm — the same rule sets compiled again from an equal new
document, as for the next device of a group or a redeploy (the lowering cache) — and after
a 1-rule edit (the other rules and segments reused) — and, in a
private `rpt_` network namespace, `ipset restore` + `iptables-restore` of the very same
bundle with the nft and the legacy backend. Prints a table; appends one JSON line per case
to bench/results.jsonl. Target: compile ≤ 0.5 × load. `--sets sets|both`: also (or only)
set-compiled (docs/compiler.md, "Set-compiled rule runs"; this kernel's ipset types).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies import NOW, big_group, one_rule_changed, realistic  # noqa: E402

from compiler import CompileOptions, PolicyDocument, compile_device  # noqa: E402
from compiler.lower import RULESET_CACHE  # noqa: E402

RESULTS = Path(__file__).with_name("results.jsonl")
RESTORE = {"nft": "iptables-restore", "legacy": "iptables-legacy-restore"}
SETS = CompileOptions(
    set_compile=True,
    set_types=frozenset({"hash:net", "hash:net,port", "hash:ip,port,net", "hash:ip,port,ip"}),
)
MODES = {"linear": [("", CompileOptions())], "sets": [(" (sets)", SETS)]}
MODES["both"] = MODES["linear"] + MODES["sets"]


def timed(fn, runs: int, setup=lambda: None) -> tuple[float, float, object]:
    """(median wall seconds, median CPU seconds of this process, result); `setup` and
    dropping the previous result (freeing 50k rules takes ~50 ms) are not timed."""
    walls, cpus, result = [], [], None
    for _ in range(runs):
        result = None
        setup()
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sh(*cmd: str, input: str | None = None) -> None:
    subprocess.run(cmd, input=input, text=True, check=True, capture_output=True)


def load_time(bundle, backend: str, runs: int) -> tuple[float, float]:
    """Median (wall, CPU) of ipset restore + iptables-restore in a fresh rpt_ namespace.

    CPU is the children's user+system time: the kernel work of a restore happens in its
    own process context, and unlike wall time it does not count other processes' turns on
    a shared machine.
    """
    walls, cpus = [], []
    for i in range(runs):
        ns = f"rpt_cpb{os.getpid() % 10000}_{i}"
        sh("ip", "netns", "add", ns)
        try:
            start, cpu = time.perf_counter(), children_cpu()
            if bundle.ipsets:
                sh("ip", "netns", "exec", ns, "ipset", "restore", input=bundle.ipsets)
            sh("ip", "netns", "exec", ns, RESTORE[backend], input=bundle.iptables_v4)
            walls.append(time.perf_counter() - start)
            cpus.append(children_cpu() - cpu)
        finally:
            sh("ip", "netns", "delete", ns)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--no-group", action="store_true")
    parser.add_argument("--no-load", action="store_true", help="skip the kernel (no root)")
    parser.add_argument("--sets", choices=sorted(MODES), default="linear")
    args = parser.parse_args()
    can_load = not args.no_load and os.geteuid() == 0
    cases = [(f"{int(n) // 1000}k rules", int(n), realistic(int(n))) for n in args.sizes.split(",")]
    if not args.no_group:
        cases.append(("100k-entry group", 100_000, big_group()))
    cases = [
        (label + suffix, size, data, options)
        for label, size, data in cases
        for suffix, options in MODES[args.sets]
    ]
    rows = []
    for label, size, data, options in cases:
        parse_s, parse_cpu, doc = timed(lambda d=data: PolicyDocument.from_dict(d), args.runs)

        compile_s, compile_cpu, bundle = timed(
            lambda d=doc, o=options: compile_device(d, "bench", options=o, now=NOW),
            args.runs,
            RULESET_CACHE.clear,
        )
        again = PolicyDocument.from_dict(copy.deepcopy(data))  # an equal, new document
        warm_s, warm_cpu, warm = timed(
            lambda d=again, o=options: compile_device(d, "bench", options=o, now=NOW), args.runs
        )
        assert warm.to_json() == bundle.to_json()
        edited_doc = PolicyDocument.from_dict(one_rule_changed(data))
        edit_s, edit_cpu, _ = timed(
            lambda d=edited_doc, o=options: compile_device(d, "bench", options=o, now=NOW),
            args.runs,
            lambda d=doc, o=options: compile_device(d, "bench", options=o, now=NOW),
        )
        loads = {b: load_time(bundle, b, args.runs) for b in RESTORE} if can_load else {}
        row = {
            "bench": "compile",
            "case": label,
            "size": size,
            "kernel_rules": bundle.iptables_v4.count("\n-A "),
            "set_compiled": options.set_compile,
            "set_entries": sum(m["entries"] for m in bundle.sets.values()),
            "parse_ms": ms(parse_s),
            "parse_cpu_ms": ms(parse_cpu),
            "compile_ms": ms(compile_s),
            "compile_cpu_ms": ms(compile_cpu),
            "warm_ms": ms(warm_s),
            "warm_cpu_ms": ms(warm_cpu),
            "edit_ms": ms(edit_s),
            "edit_cpu_ms": ms(edit_cpu),
            "load_avg": round(os.getloadavg()[0], 2),
            "runs": args.runs,
            "python": platform.python_version(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        for backend, (wall, cpu) in loads.items():
            row[f"load_{backend}_ms"] = ms(wall)
            row[f"load_{backend}_cpu_ms"] = ms(cpu)
            row[f"ratio_{backend}"] = round(compile_s / wall, 2)
            row[f"ratio_{backend}_cpu"] = round(compile_cpu / cpu, 2) if cpu else None
            row[f"warm_ratio_{backend}"] = round(warm_s / wall, 2)
            row[f"edit_ratio_{backend}"] = round(edit_s / wall, 2)
        rows.append(row)
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    print_table(rows)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def print_table(rows: list[dict]) -> None:
    """Wall times, with CPU times in brackets; ratio = compile / load (target ≤ 0.5)."""
    head = (
        "case",
        "kernel rules",
        "parse+validate",
        "compile cold",
        "compile warm",
        "after 1-rule edit",
        "load nft",
        "load legacy",
        "cold/nft",
        "cold/legacy",
        "warm/nft",
        "warm/legacy",
        "edit/nft",
        "edit/legacy",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def pair(r: dict, key: str) -> str:
        if key not in r:
            return "–"
        return f"{r[key]:.0f} ms ({r[key.replace('_ms', '_cpu_ms')]:.0f})"

    def ratio(r: dict, key: str) -> str:
        return f"{r[key]:.2f}×" if key in r else "–"

    for r in rows:
        sets = f" + {r['set_entries']:,} set entries" if r["set_entries"] else ""
        print(
            f"| {r['case']} | {r['kernel_rules']:,}{sets} | {pair(r, 'parse_ms')} | "
            f"{pair(r, 'compile_ms')} | {pair(r, 'warm_ms')} | {pair(r, 'edit_ms')} | "
            f"{pair(r, 'load_nft_ms')} | {pair(r, 'load_legacy_ms')} | "
            f"{ratio(r, 'ratio_nft')} | {ratio(r, 'ratio_legacy')} | "
            f"{ratio(r, 'warm_ratio_nft')} | {ratio(r, 'warm_ratio_legacy')} | "
            f"{ratio(r, 'edit_ratio_nft')} | {ratio(r, 'edit_ratio_legacy')} |"
        )
    if rows:
        print(
            f"(wall ms, CPU ms in brackets; load average {rows[-1]['load_avg']}; "
            f"appended to {RESULTS})"
        )


if __name__ == "__main__":
    main()
