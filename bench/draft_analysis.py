"""Live analysis in the editor: what one draft analysis costs (agents.draft_analysis).

    .venv/bin/python bench/draft_analysis.py [--sizes 100,1000,3000] [--repeat 5]

The editor asks for it ~300 ms after the admin stops typing, so it should answer in well
under a second for ordinary rule sets. Runs against a fresh SQLite file in a temporary
directory: a rule set of N rules applied to one device together with a second rule set of
N/2 rules, and times `analyse_draft` of a new rule at the end (validation, the working
copy, the rule set's analysis and the device's). Prints a table and appends JSON lines to
bench/results.jsonl, with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results.jsonl"


def setup_django(tmp: Path) -> None:
    os.environ["RAMPART_VAR_DIR"] = str(tmp / "var")
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'draft-bench.sqlite3'}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)


def rules(n: int, offset: int) -> list[dict]:
    return [
        {
            "action": "accept" if i % 3 else "drop",
            "sources": [f"198.18.{(i + offset) // 250 % 256}.{(i + offset) % 250 + 1}"],
            "protocol": "tcp",
            "dports": [str(1000 + i % 5000)],
            "comment": f"rule {i + 1}",
        }
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,3000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(Path(tmp))
        from agents.draft_analysis import analyse_draft
        from rules import services
        from rules.models import Device, RuleSet
        from rules.services import device_refs

        print(f"{'rules':>6} {'other':>6} {'median ms':>10} {'max ms':>8} findings")
        for size in (int(s) for s in args.sizes.split(",")):
            edge = services.object_save(RuleSet(name=f"edge-{size}"))
            services.rules_bulk(ruleset=edge, create=rules(size, 0))
            base = services.object_save(RuleSet(name=f"base-{size}"))
            services.rules_bulk(ruleset=base, create=rules(size // 2, 30_000))
            fw = services.object_save(Device(name=f"fw-{size}", address="198.18.0.2"))
            device_refs.device_set_rulesets(device=fw, rulesets=[base.name, edge.name])
            draft = {
                "action": "drop",
                "sources": ["198.18.0.1"],
                "protocol": "tcp",
                "dports": ["1000"],
            }
            times, found = [], 0
            for _ in range(args.repeat):
                start = time.perf_counter()
                result = analyse_draft(edge, draft)
                times.append((time.perf_counter() - start) * 1000)
                found = len(result.findings)
            median, worst = statistics.median(times), max(times)
            print(f"{size:>6} {size // 2:>6} {median:>10.0f} {worst:>8.0f} {found}")
            with RESULTS.open("a") as fh:
                fh.write(
                    json.dumps(
                        {
                            "bench": "draft_analysis",
                            "rules": size,
                            "other_rules": size // 2,
                            "median_ms": round(median, 1),
                            "max_ms": round(worst, 1),
                            "findings": found,
                            "load": os.getloadavg()[0],
                            "python": platform.python_version(),
                        }
                    )
                    + "\n"
                )


if __name__ == "__main__":
    main()
