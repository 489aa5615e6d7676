"""`make run`: prepare the database, then run web server, Celery worker and beat together.

Ctrl-C (or SIGTERM) stops everything it started; if one process dies, the others are
stopped too, so a half-running console never lingers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, bootstrap (admin user, demo policy) and run web + worker + beat."

    def add_arguments(self, parser):
        parser.add_argument("--listen", default=os.environ.get("RAMPART_LISTEN", "127.0.0.1:8000"))
        parser.add_argument("--no-demo", action="store_true", help="do not load the demo policy")

    def handle(self, *args, listen: str, no_demo: bool, **options):
        call_command("migrate", interactive=False, verbosity=0)
        if settings.CACHES["default"]["BACKEND"].endswith("DatabaseCache"):
            call_command("createcachetable", verbosity=0)
        call_command("rampart_bootstrap", demo=not no_demo)
        bin_dir = os.path.dirname(sys.executable)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        commands = {
            "web": [
                os.path.join(bin_dir, "gunicorn"),
                "console.wsgi",
                "--bind",
                listen,
                "--workers",
                "2",
                "--threads",
                "4",
                "--no-control-socket",
                "--access-logfile",
                "-",
            ],
            "worker": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "console",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                *(["-P", "solo"] if settings.CELERY_BROKER_URL.startswith("filesystem") else []),
            ],
            "beat": [
                os.path.join(bin_dir, "celery"),
                "-A",
                "console",
                "beat",
                "--loglevel",
                "INFO",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
            ],
        }
        demo_agent = self._demo_agent_command()
        if demo_agent:
            commands["agent"] = demo_agent
        procs = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
        self.stdout.write(
            f"Rampart console on http://{listen}/ (Ctrl-C stops web, worker, beat"
            f"{', demo agent' if demo_agent else ''})"
        )
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                dead = [n for n, p in procs.items() if p.poll() is not None]
                if dead:
                    self.stderr.write(f"{', '.join(dead)} exited; stopping the rest")
                    break
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.time() + 10
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _demo_agent_command(self) -> list[str] | None:
        """The demo agent (see rampart_agent/demo.py) when it is available."""
        try:
            from rampart_agent import demo
        except ImportError:
            return None
        return demo.command(sys.executable)
