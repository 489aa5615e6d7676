"""`rampart_check FILE [--json] [--now ISO]`: validate a policy document offline (CI).

Reads YAML or JSON, reports errors, warnings and assertion results, changes nothing and
needs no database. Exit status: 0 ok, 1 errors or failed assertions, 2 unreadable file.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from compiler import CompileOptions, check_document
from compiler.document import parse_datetime
from rules import importer


class Command(BaseCommand):
    help = "Validate a policy document: errors, analysis warnings and assertion results."
    requires_system_checks: list = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("file", help="the policy document (YAML or JSON; - for stdin)")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the report as JSON"
        )
        parser.add_argument("--now", help="evaluate rule expiry at this ISO time (default: now)")
        parser.add_argument("--ipset-threshold", type=int, default=None)

    def handle(
        self,
        *args,
        file: str,
        as_json: bool,
        now: str | None,
        ipset_threshold: int | None,
        **options,
    ):
        try:
            raw = self.stdin_bytes() if file == "-" else Path(file).read_bytes()
        except OSError as exc:
            self.stderr.write(f"cannot read {file}: {exc.strerror}")
            raise SystemExit(2) from None
        try:
            at = parse_datetime(now) if now else datetime.now(UTC)
        except ValueError as exc:
            raise CommandError(f"--now: {exc}") from None
        threshold = ipset_threshold or settings.RAMPART["IPSET_THRESHOLD"]
        try:
            data = importer.load_text(raw, fmt="json" if file.endswith(".json") else None)
        except importer.ImportFailed as exc:
            report_dict = {
                "ok": False,
                "errors": [e.to_dict() for e in exc.errors],
                "warnings": [],
                "assertions": [],
            }
            self.emit(report_dict, [f"error: {e}" for e in exc.errors], as_json)
            raise SystemExit(1) from None
        report = check_document(data, now=at, options=CompileOptions(ipset_threshold=threshold))
        self.emit(report.to_dict(), report.lines(), as_json)
        if not report.ok:
            raise SystemExit(1)

    def stdin_bytes(self) -> bytes:
        return sys.stdin.buffer.read()

    def emit(self, data: dict, lines: list[str], as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(data, indent=2))
            return
        for line in lines:
            self.stdout.write(line)
        errors = len(data["errors"])
        failed = sum(not a["passed"] for a in data["assertions"])
        self.stdout.write(
            f"{'OK' if data['ok'] else 'FAILED'}: {errors} error(s), "
            f"{len(data['warnings'])} warning(s), {len(data['assertions'])} "
            f"assertion(s), {failed} failed"
        )
