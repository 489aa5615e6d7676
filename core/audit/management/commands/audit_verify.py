"""Check the audit log's hash chain; exit status 1 at the first broken link."""

from django.core.management.base import BaseCommand, CommandError

from core.audit.services import verify


class Command(BaseCommand):
    help = "Verify the audit log hash chain and report the first edited, deleted or inserted entry."

    def handle(self, *args, **options) -> None:
        result = verify()
        if result["ok"]:
            self.stdout.write(
                self.style.SUCCESS(f"audit log intact: {result['checked']} entries verified")
            )
            return
        broken = result["first_broken"]
        raise CommandError(
            f"audit log broken at entry #{broken['seq']} (id {broken['id']}): {broken['problem']} "
            f"({result['checked']} entries verified before it)"
        )
