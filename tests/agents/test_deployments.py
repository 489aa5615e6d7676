"""Creating deployments: a newer deployment supersedes the queued older one."""

from __future__ import annotations

import pytest

from agents import services
from agents.choices import DeploymentStatus
from agents.models import Deployment
from tests.agents.helpers import run_all
from tests.support.deploy import make_device

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.usefixtures("deploy_console"),
]


def test_newer_deploy_supersedes_queued_older(agent, policy):
    _, group = policy
    device = make_device("web-1", group=group, agent=agent)
    old = services.deploy_create(devices=[device.pk])
    new = services.deploy_create(devices=[device.pk])
    old_dd = old.device_deployments.get()
    assert old_dd.state == "superseded" and old_dd.superseded_by == new.device_deployments.get()
    services.deployment_refresh(deployment_id=old.pk)
    assert Deployment.objects.get(pk=old.pk).status == DeploymentStatus.SUPERSEDED
    assert services.device_deployment_run(device_deployment_id=old_dd.pk) == "superseded"
    assert run_all(new) == ["confirmed"]
