"""Create the `admin` user (password printed once) and load the demo policy into an empty database."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

DEMO_POLICY = Path(__file__).resolve().parents[2] / "demo-policy.yaml"


class Command(BaseCommand):
    help = "Create the admin user and, in an empty database, the demo policy."

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", dest="demo", action="store_false")

    def handle(self, *args, demo: bool = True, **options):
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            password = os.environ.get("RAMPART_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            user = User.objects.create_superuser("admin", "", password)
            user.groups.add(Group.objects.get(name="admin"))
            shown = (
                "(from RAMPART_ADMIN_PASSWORD)"
                if os.environ.get("RAMPART_ADMIN_PASSWORD")
                else password
            )
            self.stdout.write(self.style.SUCCESS(f"Created user 'admin' with password: {shown}"))
        if demo:
            from rules.models import RuleSet

            if not RuleSet.objects.exists():
                from rules.importer import import_document_file

                import_document_file(DEMO_POLICY, actor="system:bootstrap")
                self.stdout.write("Loaded the demo policy (console/demo-policy.yaml).")
