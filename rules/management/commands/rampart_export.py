"""`rampart_export [--ruleset NAME]... [--device NAME]... [--format yaml|json] [-o FILE]`.

Narrowed to rule sets or devices, the document records them in its `scope`, so importing it
with prune deletes nothing outside them."""

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
        try:
            doc = exporter.export_named(rulesets=ruleset, devices=device)
        except exporter.UnknownTargets as exc:
            raise CommandError(str(exc)) from None
        fmt = format or ("json" if output and output.endswith(".json") else "yaml")
        text = exporter.render(doc, fmt)
        if output:
            Path(output).write_text(text)
        else:
            self.stdout.write(text, ending="")
