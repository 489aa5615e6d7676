"""Print a new API token for a user (for CI pipelines), under the token policy: the user
must hold a role in RAMPART_TOKEN_ROLES; the lifetime defaults to RAMPART_TOKEN_TTL_DAYS."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.accounts.errors import TokenRoleRefused
from core.accounts.services import token_create


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it once (it is stored hashed)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            help="lifetime in days (default: RAMPART_TOKEN_TTL_DAYS)",
        )

    def handle(self, *args, username: str, expires_days: int | None, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None
        try:
            _, key = token_create(user=user, expires_in_days=expires_days)
        except TokenRoleRefused as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(key)
