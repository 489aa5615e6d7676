"""Twelve-factor settings: the environment decides database, broker, cache and DEBUG."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s;"
    "print(json.dumps({'debug': s.DEBUG, 'broker': s.CELERY_BROKER_URL, 'db': s.DATABASES['default']['ENGINE'],"
    "'cache': s.CACHES['default']['BACKEND'], 'hosts': s.ALLOWED_HOSTS, 'secret': bool(s.SECRET_KEY),"
    "'origins': s.CSRF_TRUSTED_ORIGINS}))"
)


def settings_with(tmp_path, **env) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "CELERY_BROKER_URL",
            "DEBUG",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "CSRF_TRUSTED_ORIGINS",
            "RAMPART_LISTEN",
        }
    }
    clean.update(DJANGO_SETTINGS_MODULE="console.settings", RAMPART_VAR_DIR=str(tmp_path), **env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_defaults_are_embedded_sqlite_filesystem_broker_and_debug_off(tmp_path):
    s = settings_with(tmp_path)
    assert s["db"] == "django.db.backends.sqlite3"
    assert s["broker"] == "filesystem://"
    assert s["cache"].endswith("DatabaseCache")
    assert s["debug"] is False
    assert s["secret"] and (tmp_path / "secret_key").exists()


def test_production_environment_is_honoured(tmp_path):
    s = settings_with(
        tmp_path,
        DATABASE_URL="postgres://u@127.0.0.1:5432/x",
        REDIS_URL="redis://127.0.0.1:6379/3",
        SECRET_KEY="k",
        ALLOWED_HOSTS="fw.example.org,console",
        DEBUG="1",
    )
    assert s["db"] == "django.db.backends.postgresql"
    assert s["broker"] == "redis://127.0.0.1:6379/3"
    assert s["cache"] == "django_redis.cache.RedisCache"
    assert s["hosts"] == ["fw.example.org", "console"]
    assert s["debug"] is True


def test_celery_broker_url_overrides_redis(tmp_path):
    s = settings_with(
        tmp_path,
        REDIS_URL="redis://127.0.0.1:6379/3",
        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
    )
    assert s["broker"].startswith("amqp://")


def test_the_listen_address_is_an_allowed_host_and_a_trusted_origin(tmp_path):
    s = settings_with(tmp_path, RAMPART_LISTEN="198.18.7.9:8000")
    assert "198.18.7.9" in s["hosts"] and "127.0.0.1" in s["hosts"]
    assert s["origins"] == ["http://198.18.7.9:8000"]
    s = settings_with(tmp_path, RAMPART_LISTEN="[fd00::7]:9000", ALLOWED_HOSTS="fw.example.org")
    assert s["hosts"] == ["fw.example.org", "[fd00::7]"]
    assert s["origins"] == ["http://[fd00::7]:9000"]
    assert settings_with(tmp_path, RAMPART_LISTEN="198.18.7.9")["origins"] == [
        "http://198.18.7.9:8000"  # gunicorn's default port
    ]


def test_a_wildcard_or_socket_listen_address_adds_no_host(tmp_path):
    for listen in ("0.0.0.0:8000", "[::]:8000", "unix:/run/rampart.sock"):
        s = settings_with(tmp_path, RAMPART_LISTEN=listen, ALLOWED_HOSTS="fw.example.org")
        assert s["hosts"] == ["fw.example.org"] and s["origins"] == [], listen
