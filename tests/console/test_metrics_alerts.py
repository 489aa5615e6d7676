"""docs/prometheus-alerts.yml against what the console really exports: a scrape of a fleet
with an offline agent, a drifted device and a broken audit chain is fed to `promtool test
rules`, which must fire exactly the expected alerts (skipped where promtool is missing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.core.cache import cache
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from console.metrics import audit
from core.audit.models import AuditEntry
from tests.support.deploy import make_device
from tests.support.tamper import tamper

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed"),
]
RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus-alerts.yml"
TOKEN = "alerts-test-token"
TARGET = {"job": "rampart-console", "instance": "console:443"}


def _series(text: str) -> list[dict]:
    """Every sample of a scrape as a promtool input series holding its value for 30 min."""
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {**s.labels, **TARGET}
            selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out.append({"series": f"{s.name}{{{selector}}}", "values": f"{s.value}x30"})
    return out


def _annotations(rule: dict, labels: dict) -> dict:
    """The rule's annotations rendered for `labels` (only `$labels.x` templates used)."""
    pattern = re.compile(r"\{\{ \$labels\.(\w+) \}\}")
    return {
        k: pattern.sub(lambda m: labels[m.group(1)], v)
        for k, v in rule.get("annotations", {}).items()
    }


def _rule(name: str) -> dict:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return next(r for g in groups for r in g["rules"] if r.get("alert") == name)


def _expected(name: str, **labels: str) -> dict:
    rule = _rule(name)
    all_labels = {**rule.get("labels", {}), **TARGET, **labels}
    return {"exp_labels": all_labels, "exp_annotations": _annotations(rule, all_labels)}


def test_alert_rules_fire_on_the_console_metrics(client, settings, monkeypatch, tmp_path):
    settings.RAMPART_METRICS_TOKEN = TOKEN
    settings.CELERY_BROKER_URL = "filesystem://"
    monkeypatch.setattr(audit, "start", lambda check: check())
    cache.clear()
    make_device("web-1", status="online", last_seen_at=timezone.now())
    make_device("db-1", status="offline", last_seen_at=timezone.now())
    make_device("web-2", status="online", drifted=True, last_seen_at=timezone.now())
    make_device("new-1")  # never seen: not an agent down
    tamper(
        "UPDATE audit_auditentry SET actor = 'mallory' WHERE id = %s",
        [AuditEntry.objects.order_by("seq").first().pk],
    )
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    cache.clear()

    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    *_series(response.content.decode()),
                    {
                        "series": 'up{job="rampart-console",instance="console:443"}',
                        "values": "1x30",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "RampartAgentOffline",
                        "exp_alerts": [_expected("RampartAgentOffline", device="db-1")],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "RampartDeviceDrifted",
                        "exp_alerts": [_expected("RampartDeviceDrifted", device="web-2")],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "RampartAuditLogBroken",
                        "exp_alerts": [_expected("RampartAuditLogBroken")],
                    },
                    {"eval_time": "20m", "alertname": "RampartMetricsDown", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "RampartDeployFailures", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "RampartAuditNotVerified", "exp_alerts": []},
                ],
            }
        ],
    }
    spec = tmp_path / "alerts-test.yml"
    spec.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        ["promtool", "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
