"""Audit log benchmark: what auditing costs a write, and how fast the log exports and verifies.

    python bench/audit.py [--writes 300] [--bulk 10000] [--entries 1000000]

Runs against a fresh SQLite file in a temporary directory (or DATABASE_URL when set: use a
scratch database, the benchmark writes a million audit rows). It measures, in one run:
  1. an API write (POST through middleware, knox token auth, DRF, the service) with and
     without auditing, interleaved in rounds so machine load hits both alike;
  2. a `rules_bulk` create of N rules with and without auditing (one entry per rule);
  3. appending E entries to the chain, exporting them as CSV and as JSON lines through
     the API (streamed: resident memory is sampled while reading), and `audit_verify`.
Prints a table and appends JSON lines to bench/results.jsonl.
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
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def setup_django(tmp: Path) -> str:
    os.environ["RAMPART_VAR_DIR"] = str(tmp / "var")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'audit-bench.sqlite3'}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    from django.db import connection

    return connection.vendor


def write_endpoint():
    """The address create endpoint of the API when it exists; else an equivalent thin view
    (token auth, CanEdit, one service call) mounted for the benchmark only."""
    from django.conf import settings
    from django.urls import clear_url_caches, include, path, resolve
    from django.urls.exceptions import Resolver404

    try:
        resolve("/api/v1/addresses/")
        return "/api/v1/addresses/", "API /api/v1/addresses/"
    except Resolver404:
        pass
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from core.accounts.permissions import CanEdit
    from rules import services
    from rules.models import AddressObject

    class BenchAddressCreate(APIView):
        permission_classes = [CanEdit]

        def post(self, request):
            obj = services.object_save(
                AddressObject(name=request.data["name"], value=request.data["value"])
            )
            return Response({"id": obj.pk}, status=201)

    urls = ModuleType("bench_audit_urls")
    urls.urlpatterns = [
        path("api/v1/bench/addresses/", BenchAddressCreate.as_view()),
        path("", include("console.urls")),
    ]
    sys.modules["bench_audit_urls"] = urls
    settings.ROOT_URLCONF = "bench_audit_urls"
    clear_url_caches()
    return "/api/v1/bench/addresses/", "bench view (the API's address endpoint is not there yet)"


def bench_api_writes(n: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    from core.audit.context import audit_disabled

    user = get_user_model().objects.create_user("bench-operator", password="pw-Rampart-123")
    user.groups.add(Group.objects.get(name="operator"))
    _, key = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    url, label = write_endpoint()
    times: dict[str, list[float]] = {"audited": [], "plain": []}
    counter = 0
    rounds = 6
    per_round = max(1, n // rounds)

    def one() -> float:
        nonlocal counter
        counter += 1
        body = {"name": f"bench-{counter}", "value": f"198.18.{counter // 250}.{counter % 250 + 1}"}
        start = time.perf_counter()
        response = client.post(url, body, format="json", HTTP_X_RAMPART_REASON="benchmark")
        elapsed = time.perf_counter() - start
        assert response.status_code == 201, response.content[:300]
        return elapsed

    for _ in range(5):  # warm up both paths
        one()
        with audit_disabled():
            one()
    for r in range(rounds):
        order = ("audited", "plain") if r % 2 == 0 else ("plain", "audited")
        for mode in order:
            for _ in range(per_round):
                if mode == "plain":
                    with audit_disabled():
                        times[mode].append(one())
                else:
                    times[mode].append(one())
    audited = statistics.median(times["audited"]) * 1000
    plain = statistics.median(times["plain"]) * 1000
    return {
        "case": "api write",
        "endpoint": label,
        "n": len(times["audited"]),
        "audited_ms": round(audited, 2),
        "plain_ms": round(plain, 2),
        "overhead_ms": round(audited - plain, 2),
        "overhead_pct": round(100 * (audited - plain) / plain, 1),
    }


def bench_bulk(n: int) -> dict:
    from core.audit.context import audit_disabled
    from core.audit.models import AuditEntry
    from rules import services
    from rules.models import AddressObject, RuleSet

    services.object_save(AddressObject(name="bench-office", value="198.18.0.0/24"))
    items = [
        {
            "action": "accept",
            "sources": ["bench-office"],
            "protocol": "tcp",
            "dports": [str(1024 + i % 60000)],
            "comment": f"bench rule {i}",
        }
        for i in range(n)
    ]
    times: dict[str, list[float]] = {"audited": [], "plain": []}
    entries = 0
    for run, mode in enumerate(("plain", "audited", "audited", "plain")):
        rs = services.object_save(RuleSet(name=f"bench-bulk-{run}"))
        before = AuditEntry.objects.count()
        start = time.perf_counter()
        if mode == "plain":
            with audit_disabled():
                services.rules_bulk(ruleset=rs, create=items)
        else:
            services.rules_bulk(ruleset=rs, create=items)
        times[mode].append(time.perf_counter() - start)
        if mode == "audited":
            entries = AuditEntry.objects.count() - before
    audited, plain = min(times["audited"]), min(times["plain"])
    return {
        "case": "rules_bulk create",
        "n": n,
        "audit_entries": entries,
        "audited_s": round(audited, 2),
        "plain_s": round(plain, 2),
        "overhead_s": round(audited - plain, 2),
        "overhead_pct": round(100 * (audited - plain) / plain, 1),
    }


def fill(total: int) -> dict:
    """Append `total` entries through the real append path, 20,000 per transaction."""
    from django.db import transaction
    from django.utils import timezone

    from core.audit.context import current
    from core.audit.models import AuditEntry
    from core.audit.services import _append, _build

    have = AuditEntry.objects.count()
    ctx, chunk, start = current(), 20000, time.perf_counter()
    added = 0
    while have + added < total:
        size = min(chunk, total - have - added)
        now = timezone.now()
        batch = [
            _build(
                "drift_detected",
                ctx,
                now=now,
                object_type="rules.device",
                object_id=i % 500,
                name=f"fw-{i % 500}",
                before={"drifted": False},
                after={
                    "drifted": True,
                    "diff": f"-A RPT-INPUT -p tcp --dport {i % 65535} -j ACCEPT",
                },
            )
            for i in range(added, added + size)
        ]
        with transaction.atomic():
            _append(batch)
        added += size
    elapsed = time.perf_counter() - start
    return {
        "case": "append",
        "n": added,
        "seconds": round(elapsed, 1),
        "rate_per_s": round(added / elapsed) if elapsed else None,
    }


def bench_export(fmt: str, client) -> dict:
    rss_before = rss_mb()
    peak = rss_before
    start = time.perf_counter()
    response = client.get("/api/v1/audit/export/", {"format": fmt})
    assert response.status_code == 200 and response.streaming
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
        if lines % 50000 < 600:
            peak = max(peak, rss_mb())
    elapsed = time.perf_counter() - start
    rows = lines - (1 if fmt == "csv" else 0)
    return {
        "case": f"export {fmt}",
        "n": rows,
        "seconds": round(elapsed, 1),
        "rate_per_s": round(rows / elapsed),
        "mb": round(size / 2**20, 1),
        "rss_growth_mb": round(peak - rss_before, 1),
    }


def bench_verify() -> dict:
    from core.audit.services import verify

    start = time.perf_counter()
    result = verify()
    elapsed = time.perf_counter() - start
    assert result["ok"], result
    return {
        "case": "verify",
        "n": result["checked"],
        "seconds": round(elapsed, 1),
        "rate_per_s": round(result["checked"] / elapsed),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300, help="API writes per mode")
    parser.add_argument("--bulk", type=int, default=10000, help="rules per bulk create")
    parser.add_argument("--entries", type=int, default=1_000_000, help="audit entries to export")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results.jsonl"))
    args = parser.parse_args()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="rpt-audit-bench-") as tmp:
        vendor = setup_django(Path(tmp))
        from rest_framework.test import APIClient

        rows = [bench_api_writes(args.writes), bench_bulk(args.bulk), fill(args.entries)]
        from django.contrib.auth import get_user_model

        client = APIClient()
        client.force_authenticate(get_user_model().objects.get(username="bench-operator"))
        rows += [bench_export("csv", client), bench_export("jsonl", client), bench_verify()]
    load = os.getloadavg()[0]
    print(f"\nrampart audit benchmark ({stamp}, {vendor}, {os.cpu_count()} CPUs, load {load:.1f})")
    api, bulk = rows[0], rows[1]
    print(f"{'case':22} {'n':>9} {'audited':>11} {'without':>11} {'overhead':>16}")
    print(
        f"{'api write (median)':22} {api['n']:>9} {api['audited_ms']:>9.2f}ms {api['plain_ms']:>9.2f}ms "
        f"{api['overhead_ms']:>+8.2f}ms {api['overhead_pct']:>+5.1f}%"
    )
    print(
        f"{'rules_bulk create':22} {bulk['n']:>9} {bulk['audited_s']:>10.2f}s {bulk['plain_s']:>10.2f}s "
        f"{bulk['overhead_s']:>+9.2f}s {bulk['overhead_pct']:>+5.1f}%"
    )
    print(f"  ({api['endpoint']}; bulk wrote {bulk['audit_entries']} entries)")
    print(f"\n{'case':22} {'entries':>9} {'seconds':>9} {'entries/s':>10} {'MB':>7} {'RSS +MB':>8}")
    for r in rows[2:]:
        print(
            f"{r['case']:22} {r['n']:>9} {r['seconds']:>9.1f} {r['rate_per_s']:>10} "
            f"{r.get('mb', ''):>7} {r.get('rss_growth_mb', ''):>8}"
        )
    with open(args.results, "a") as fh:
        for r in rows:
            fh.write(
                json.dumps(
                    {
                        "bench": "audit",
                        "at": stamp,
                        "host": platform.node(),
                        "db": vendor,
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
