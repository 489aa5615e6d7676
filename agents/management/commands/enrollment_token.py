"""`manage.py enrollment_token DEVICE`: print a one-time enrollment token for a device."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from agents import services
from rules.models import Device


class Command(BaseCommand):
    help = (
        "Make a one-time enrollment token for DEVICE (name or id) and print it (shown only once)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("device", help="device name or id")
        parser.add_argument(
            "--ttl", type=int, default=None, help="seconds until it expires (default 3600)"
        )

    def handle(self, *args, device: str, ttl: int | None, **options) -> None:
        found = Device.objects.filter(name=device).first()
        if found is None and device.isdecimal():
            found = Device.objects.filter(pk=int(device)).first()
        if found is None:
            raise CommandError(f"no device named {device!r}")
        try:
            issued = services.enrollment_token_create(device=found, ttl=ttl)
        except Exception as exc:  # a ValidationError reads better than a traceback
            raise CommandError(str(exc)) from exc
        self.stdout.write(issued.token)
        self.stderr.write(
            f"for device {found.name}, expires {issued.record.expires_at.isoformat()}; "
            f"run: rampart-agent enroll --console URL --token {issued.token[:15]}…"
        )
