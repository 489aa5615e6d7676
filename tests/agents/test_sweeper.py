"""The sweeper fails device deployments whose worker was lost, saying why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import services
from agents.choices import DeploymentStatus
from agents.models import DeviceDeployment
from tests.agents.helpers import free_port
from tests.support.deploy import make_device

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]


def test_sweeper_fails_stuck_deployments_with_reason(policy):
    _, group = policy
    device = make_device("web-1", group=group, port=free_port())
    deployment = services.deploy_create(devices=[device.pk])
    dd = deployment.device_deployments.get()
    DeviceDeployment.objects.filter(pk=dd.pk).update(state="pushing")
    assert services.sweep_stuck() == 0
    later = timezone.now() + timedelta(hours=1)
    assert services.sweep_stuck(now=later) == 1
    dd.refresh_from_db()
    assert dd.state == "failed" and dd.error.startswith("stuck in pushing for ")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.FAILED
