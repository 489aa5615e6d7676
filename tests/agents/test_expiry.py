"""The scheduled redeploy at a rule's expiry: one audited deployment per expiry, only for
the devices whose last compile came before it."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from agents import enqueue, services, tasks
from agents.choices import DeploymentTrigger
from agents.models import Deployment, DeviceDeployment
from core.audit.models import AuditEntry
from rules import services as rules_services
from rules.models import DeviceRuleSet, RuleSet
from tests.agents.helpers import free_port
from tests.support.deploy import make_device

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("deploy_console")]

EXPIRES = timezone.now().replace(microsecond=0) + timedelta(days=1)


@pytest.fixture
def temporary(policy):
    """Rule set `web` with a rule expiring at EXPIRES, a device of its group deployed an
    hour before that, and a device without the rule set deployed at the same time."""
    ruleset, group = policy
    rule = rules_services.rule_create(
        ruleset=ruleset,
        data={
            "chain": "input",
            "action": "accept",
            "protocol": "tcp",
            "dports": ["8443"],
            "comment": "temporary access",
            "expires_at": EXPIRES.isoformat(),
        },
    )
    device = make_device("web-1", group=group, port=free_port())
    other = make_device("db-1", port=free_port())
    DeviceRuleSet.objects.create(device=other, ruleset=RuleSet.objects.create(name="db"))
    for target in (device, other):
        deployed(target, EXPIRES - timedelta(hours=1))
    return SimpleNamespace(rule=rule, device=device, other=other)


def deployed(device, started_at) -> DeviceDeployment:
    """A finished deployment of `device` that compiled at `started_at`."""
    dd = services.deploy_create(devices=[device.pk]).device_deployments.get()
    DeviceDeployment.objects.filter(pk=dd.pk).update(state="confirmed", started_at=started_at)
    return dd


def expiry_deployments():
    return Deployment.objects.filter(trigger=DeploymentTrigger.EXPIRY)


def test_nothing_before_the_expiry(temporary):
    assert services.expire_rules(now=EXPIRES - timedelta(seconds=1)) is None
    assert not expiry_deployments().exists()


def test_one_audited_deployment_per_expiry(
    temporary, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(
        enqueue,
        "current_app",
        SimpleNamespace(send_task=lambda name, args: sent.append((name, args))),
    )
    after = EXPIRES + timedelta(seconds=30)
    with django_capture_on_commit_callbacks(execute=True):
        deployment = services.expire_rules(now=after)
    assert deployment is not None and deployment.trigger == DeploymentTrigger.EXPIRY
    (dd,) = deployment.device_deployments.all()
    assert dd.device == temporary.device  # not the device without the rule set
    assert sent == [(enqueue.DEPLOY_DEVICE, (dd.pk,))]  # its push, sent by name

    entry = AuditEntry.objects.get(
        action="create", object_type="agents.deployment", object_id=str(deployment.pk)
    )
    assert entry.actor == "system:expiry" and entry.channel == "system"
    assert entry.after["trigger"] == "expiry"
    assert entry.reason == "1 rule(s) expired since the last deploy"
    (named,) = entry.extra["expired_rules"]
    assert named["rule"] == str(temporary.rule.uuid) and named["ruleset"] == "web"

    # runs again: the device's deployment is under way, then it compiled after the expiry
    assert services.expire_rules(now=after) is None
    DeviceDeployment.objects.filter(pk=dd.pk).update(state="confirmed", started_at=after)
    assert services.expire_rules(now=after + timedelta(minutes=5)) is None
    assert expiry_deployments().count() == 1


def test_a_failed_redeploy_is_not_repeated_every_minute(temporary):
    deployment = services.expire_rules(now=EXPIRES + timedelta(seconds=5))
    dd = deployment.device_deployments.get()
    DeviceDeployment.objects.filter(pk=dd.pk).update(
        state="failed", started_at=EXPIRES + timedelta(seconds=6)
    )
    assert services.expire_rules(now=EXPIRES + timedelta(minutes=1)) is None
    assert expiry_deployments().count() == 1


def test_the_next_expiry_makes_the_next_deployment(temporary):
    rules_services.rule_create(
        ruleset=temporary.rule.ruleset,
        data={
            "chain": "input",
            "action": "accept",
            "protocol": "tcp",
            "dports": ["9443"],
            "expires_at": (EXPIRES + timedelta(hours=1)).isoformat(),
        },
    )
    first = services.expire_rules(now=EXPIRES + timedelta(seconds=5))
    DeviceDeployment.objects.filter(deployment=first).update(
        state="confirmed", started_at=EXPIRES + timedelta(seconds=6)
    )
    assert services.expire_rules(now=EXPIRES + timedelta(minutes=30)) is None
    second = services.expire_rules(now=EXPIRES + timedelta(hours=1, seconds=5))
    assert second is not None and second.pk != first.pk
    assert expiry_deployments().count() == 2


def test_disabled_rules_and_devices_never_deployed_are_left_alone(temporary, policy):
    _, group = policy
    make_device("web-2", group=group, port=free_port())  # never deployed: holds nothing
    temporary.rule.enabled = False
    temporary.rule.save()
    assert services.expire_rules(now=EXPIRES + timedelta(seconds=5)) is None
    temporary.rule.enabled = True
    temporary.rule.save()
    deployment = services.expire_rules(now=EXPIRES + timedelta(seconds=5))
    assert [dd.device.name for dd in deployment.device_deployments.all()] == ["web-1"]


def test_the_beat_task_returns_the_deployment(temporary, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: EXPIRES + timedelta(seconds=5))
    deployment_id = tasks.expire_rules()
    assert Deployment.objects.get(pk=deployment_id).trigger == DeploymentTrigger.EXPIRY
    assert tasks.expire_rules() is None
