"""Helpers of the deploy service tests."""

from __future__ import annotations

import socket

from agents import services
from agents.models import Deployment


def run_all(deployment: Deployment) -> list[str]:
    """Run every queued device deployment of the current wave (what the worker would do)."""
    out = []
    for dd in deployment.device_deployments.filter(state="queued").order_by("id"):
        out.append(services.device_deployment_run(device_deployment_id=dd.pk))
    return out


def free_port() -> int:
    """A loopback port nothing listens on (an agent that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
