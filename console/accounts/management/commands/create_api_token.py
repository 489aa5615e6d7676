"""Print a new API token for a user (for CI pipelines)."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it once (it is stored hashed)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--expires-days", type=int, default=None, help="default: never")

    def handle(self, *args, username: str, expires_days: int | None, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None
        expiry = timedelta(days=expires_days) if expires_days else None
        _, key = AuthToken.objects.create(user=user, expiry=expiry)
        self.stdout.write(key)
