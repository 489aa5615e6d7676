"""The production shape (docker-compose.yml) is valid and has the services the README names."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_describes_web_worker_beat_db_and_redis():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"web", "worker", "beat", "db", "redis"} <= set(spec["services"])
    assert "gunicorn" in (ROOT / "Dockerfile").read_text()
    assert spec["services"]["beat"]["deploy"]["replicas"] == 1


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    return None


@pytest.mark.skipif(
    _compose_command() is None, reason="neither `docker compose` nor `docker-compose` is installed"
)
def test_compose_accepts_the_file():
    result = subprocess.run(
        [*_compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "SECRET_KEY": "x"},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
