"""`rampart_import FILE [--dry-run] [--prune [--confirm-prune N]]` and
`rampart_import --from-iptables-save FILE [--ipset-save FILE] [--ruleset NAME] [--dry-run]
[--accept-losses] [--no-keep-ipv6]`."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.audit.context import cli_actor
from rules import exporter, importer
from rules.onboarding import NotADump, describe_loss, losses_refusal, translate_iptables_save


class Command(BaseCommand):
    help = (
        "Apply a policy document (one transaction; --dry-run prints the plan only), or turn "
        "an iptables-save dump into a rule set."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help="the policy document (YAML or JSON)")
        parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        parser.add_argument(
            "--prune",
            action="store_true",
            default=None,
            help="delete what the document no longer names (inside its scope)",
        )
        parser.add_argument(
            "--confirm-prune",
            type=int,
            metavar="N",
            help="needed when prune deletes devices, device groups or more than 10 objects: "
            "the count it deletes (--dry-run prints it)",
        )
        parser.add_argument(
            "--from-iptables-save",
            metavar="FILE",
            help="onboard a host: an iptables-save dump (filter and nat tables), or the JSON "
            "of `nft -j list ruleset` on an nftables host",
        )
        parser.add_argument("--ipset-save", metavar="FILE", help="its `ipset save` dump")
        parser.add_argument(
            "--ruleset", default="onboarded", help="rule set name for --from-iptables-save"
        )
        parser.add_argument(
            "--emit",
            metavar="FILE",
            help="with --from-iptables-save: write the document here instead of importing",
        )
        parser.add_argument(
            "--accept-losses",
            action="store_true",
            help="with --from-iptables-save: import even though untranslated lines change "
            "verdicts (they are listed first)",
        )
        parser.add_argument(
            "--no-keep-ipv6",
            dest="keep_ipv6",
            action="store_false",
            help="with --from-iptables-save of an IPv4 dump: do not add the rules that accept "
            "IPv6 as the host did (no ip6tables rules)",
        )

    def handle(
        self,
        *args,
        file: str | None,
        dry_run: bool,
        prune: bool | None,
        confirm_prune: int | None,
        from_iptables_save: str | None,
        ipset_save: str | None,
        ruleset: str,
        emit: str | None,
        accept_losses: bool = False,
        keep_ipv6: bool = True,
        **options,
    ):
        if bool(file) == bool(from_iptables_save):
            raise CommandError("give either FILE or --from-iptables-save FILE")
        try:
            if from_iptables_save:
                data = self.onboard(
                    from_iptables_save, ipset_save, ruleset, emit, accept_losses, keep_ipv6
                )
                if data is None:
                    return
                plan = importer.import_document(
                    data, prune=False, dry_run=dry_run, actor=cli_actor()
                )
            else:
                plan = importer.import_document_file(
                    file,
                    actor=cli_actor(),
                    prune=prune,
                    dry_run=dry_run,
                    confirm_prune=confirm_prune,
                )
        except importer.ImportFailed as exc:
            for error in exc.errors:
                self.stderr.write(str(error))
            raise CommandError("the document was not imported: nothing was changed") from None
        self.stdout.write(json.dumps(plan.to_dict(), indent=2))
        verb = "would change" if dry_run else "changed"
        counts = {what: sum(c.values()) for what, c in plan.summary().items()}
        self.stderr.write(
            f"{verb}: created {counts['created']}, updated {counts['updated']}, "
            f"deleted {counts['deleted']}"
            if plan.changed
            else "nothing to change"
        )

    def onboard(
        self,
        dump: str,
        ipset_dump: str | None,
        ruleset: str,
        emit: str | None,
        accept_losses: bool = False,
        keep_ipv6: bool = True,
    ) -> dict | None:
        try:
            result = translate_iptables_save(
                Path(dump).read_text(),
                Path(ipset_dump).read_text() if ipset_dump else "",
                ruleset=ruleset,
                keep_ipv6_open=keep_ipv6,
            )
        except NotADump as exc:
            raise CommandError(f"{dump}: {exc}") from None
        for chain in result.foreign_chains:
            self.stderr.write(f"not imported: chain {chain.name} belongs to {chain.owner}")
        losses = result.losses()
        for loss in losses:
            self.stderr.write(f"verdict-changing loss: {describe_loss(loss)}")
        for line in result.skipped:
            if line.impact == "verdict-neutral":
                self.stderr.write(f"line {line.line}: skipped: {line.reason}: {line.text}")
        if result.ipv6:
            self.stderr.write(f"IPv6: {result.ipv6}")
        if emit:
            Path(emit).write_text(
                exporter.render(result.document, "json" if emit.endswith(".json") else "yaml")
            )
            self.stderr.write(f"wrote {emit}; {len(result.skipped)} line(s) skipped")
            return None
        if losses and not accept_losses:
            raise CommandError(losses_refusal(losses) + ": nothing was changed")
        return result.document
