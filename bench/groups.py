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
import sqlite3
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from common import RESULTS, Console, host, manage, ms

TARGETS = {  # row name → (limit, unit)
    "create group (POST)": (3000, "ms"),
    "add one member (PATCH)": (300, "ms"),
    "remove one member (PATCH)": (300, "ms"),
    "unrelated rule write p50": (100, "ms"),
    "rule set editor": (1000, "ms"),
    "rule set preview": (1000, "ms"),
    "database growth": (20 * 100_000, "kB/100k"),  # checked per 100k members below
}


class GroupConsole(Console):
    """The console, with the size of its SQLite database and of its audit log."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, ui=True)

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.db.parent.glob(self.db.name + "*") if p.is_file())

    def audit_rows(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT COUNT(*) FROM audit_auditentry").fetchone()[0]


def run(args: argparse.Namespace, tmp: Path) -> list[dict]:
    rows: list[dict] = []

    def row(name: str, value: float, unit: str = "ms", **extra) -> None:
        rows.append({"measure": name, "value": round(value, 1), "unit": unit, **extra})

    with GroupConsole(tmp) as c:
        other = c.call("POST", "/api/v1/rulesets/", {"name": "unrelated"})["id"]
        users = c.call("POST", "/api/v1/rulesets/", {"name": "uses-big"})["id"]
        size0, audit0 = c.db_bytes(), c.audit_rows()
        members = [host(i) for i in range(args.members)]
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
            ("add one member (PATCH)", lambda i: ("add", host(args.members + i))),
            ("remove one member (PATCH)", lambda i: ("remove", host(i * 7))),
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
        state[0] = host(args.members * 2)
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


def change(c: GroupConsole, group: int, diff: dict | None, state: list[str], legacy: bool) -> None:
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
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rampart-bench-groups-") as tmp:
        rows = run(args, Path(tmp))
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    check(rows, args.members)
    print(
        f"\n{args.members:,}-member address group ({args.label or 'this tree'}; load average "
        f"{load[0]} → {load[1]} on {os.cpu_count()} CPUs)"
    )
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
        "load1": load,
        "rows": rows,
    }
    with RESULTS.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return 0 if all(r.get("ok", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
