"""The worker's side of the one compile path (agents/device_policy.py): the document a new
deployment freezes, and one device's bundle from it, with its assertions run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agents.device_policy import Target, deployment_policy, device_policy, frozen_document
from agents.models import Deployment
from rules.models import Device
from rules.revisions import Deployable


def deployment_document(devices: Sequence[Device], revision: int | None = None) -> Deployable:
    """The policy document a deployment's devices compile from, taken once in the
    deployment's transaction and stored on it, so every device of it gets the same policy
    (and approval rules apply) however long the rollout takes; with the revision of each
    rule set it holds (recorded on the deployment)."""
    return frozen_document(list(devices), revision)


@dataclass
class CompiledBundle:
    bundle: dict
    hash: str
    failed_assertions: list[str]
    compiled_at: datetime


def compile_for_device(
    device: Device,
    deployment: Deployment,
    *,
    now: datetime | None = None,
    recorded: dict | None = None,
) -> CompiledBundle:
    """Compile the device's bundle from its deployment's document and run its rule sets'
    assertions against it; devices with the same compiled policy share one compile
    (agents/device_policy.py). `recorded`: the device deployment's settings, when the
    caller holds them. Raises compiler.CompilerError (never retried)."""
    policy = device_policy(
        device, Target.DEPLOYMENT, deployment=deployment, now=now, recorded=recorded
    )
    bundle = policy.compile()
    # pushed without the rule index: the agent does not use it and the hash does not cover it
    return CompiledBundle(
        bundle.to_dict(rules=False), bundle.hash, policy.failed_assertions(), policy.now
    )


def deployment_probes(device: Device, deployment: Deployment) -> list[dict]:
    """The health probes the agent runs after this deployment's apply to `device`: the
    deployment's override when it has one, else the device's (or its groups') from the
    frozen document, in the apply request's form (docs/agent-protocol.md)."""
    if deployment.probes is not None:
        return list(deployment.probes)
    doc = deployment_policy(deployment)
    return [p.to_dict() for p in doc.device_probes(doc.device(device.name))]
