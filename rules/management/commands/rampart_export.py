"""`rampart_export [--ruleset NAME]... [--device NAME]... [--format yaml|json] [-o FILE]`."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from rules import exporter


class Command(BaseCommand):
    help = "Write the policy (all, or some rule sets/devices) as a POLICY-FORMAT.md document."

    def add_arguments(self, parser):
        parser.add_argument(
            "--ruleset", action="append", default=[], help="rule set name (repeatable)"
        )
        parser.add_argument(
            "--device", action="append", default=[], help="device name (repeatable)"
        )
        parser.add_argument(
            "--format",
            choices=exporter.FORMATS,
            default=None,
            help="default: from the output file's extension, else yaml",
        )
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")

    def handle(
        self,
        *args,
        ruleset: list[str],
        device: list[str],
        format: str | None,
        output: str | None,
        **options,
    ):
        from rules.models import Device, RuleSet

        rulesets = list(RuleSet.objects.filter(name__in=ruleset))
        devices = list(Device.objects.filter(name__in=device))
        unknown = sorted(set(ruleset) - {r.name for r in rulesets}) + sorted(
            set(device) - {d.name for d in devices}
        )
        if unknown:
            raise CommandError(f"unknown rule set or device: {', '.join(unknown)}")
        narrowed = bool(ruleset or device)
        doc = exporter.export_document(
            devices=devices if narrowed else None, rulesets=rulesets if narrowed else None
        )
        fmt = format or ("json" if output and output.endswith(".json") else "yaml")
        text = exporter.render(doc, fmt)
        if output:
            Path(output).write_text(text)
        else:
            self.stdout.write(text, ending="")
