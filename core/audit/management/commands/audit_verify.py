"""Check the audit chain against its head row and the last checkpoint; list every break.

Exit status 1 when anything is broken. An intact chain is anchored by a new checkpoint.
"""

from django.core.management.base import BaseCommand, CommandError

from core.audit.choices import VerifyTrigger
from core.audit.verification import run_verification


class Command(BaseCommand):
    help = (
        "Verify the audit chain (keyed MACs, links, gaps, head row, last checkpoint) and list "
        "every edited, deleted, inserted or truncated entry."
    )

    def handle(self, *args, **options) -> None:
        result, _ = run_verification(trigger=VerifyTrigger.COMMAND)
        cp = result["checkpoint"]
        anchor = f"checkpoint #{cp['seq']} of {cp['time']}" if cp else "no checkpoint yet"
        if result["ok"]:
            self.stdout.write(
                self.style.SUCCESS(
                    f"audit log intact: {result['checked']} entries verified ({anchor})"
                )
            )
            return
        for item in result["breaks"]:
            where = f"#{item['seq']}" if item["seq"] is not None else "-"
            self.stderr.write(f"{where} [{item['kind']}] {item['problem']}")
        listed = len(result["breaks"])
        more = (
            f" ({result['break_count'] - listed} more not listed)"
            if listed < result["break_count"]
            else ""
        )
        first = result["first_broken"]
        raise CommandError(
            f"audit log broken: {result['break_count']} breaks{more}; first at "
            f"#{first['seq']}: {first['problem']} ({result['walked']} entries checked, {anchor})"
        )
