"""A device's candidate bundle (what a deployment would push now) and its diff to the
deployed one (what the agent holds): the rule set preview page's reads, both through the
one compile path (agents.device_policy), so the preview is what the worker pushes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from agents.device_policy import NothingDeployed, Target, device_policy
from compiler import CompilerError
from compiler.diff import unified_diff
from rules.models import Device


@dataclass
class Preview:
    """A device's bundle as it would deploy now, and its diff against the deployed one."""

    device: Device
    bundle: dict | None = None
    hash: str = ""
    failed_assertions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    deployed_hash: str = ""  # the bundle the agent reported holding
    deployed_deployment: int | None = None  # the deployment that pushed it
    deployed_exact: bool = False  # the reconstruction hashes to what the agent holds
    deployed_note: str = ""
    diff: str = ""

    @property
    def unchanged(self) -> bool:
        return bool(self.deployed_hash and self.hash == self.deployed_hash)


def device_preview(device: Device) -> Preview:
    """The candidate bundle and its diff against the deployed one.

    The deployed side is exact: every deployment stores the document it compiled, so the
    one whose bundle the agent holds is compiled again as of when it ran, and its hash is
    checked against the agent's.
    """
    preview = Preview(device=device)
    try:
        candidate = device_policy(device, Target.CANDIDATE)
        bundle = candidate.compile()
        preview.failed_assertions = candidate.failed_assertions()
    except CompilerError as exc:
        preview.errors = [str(e) for e in exc.errors]
        return preview
    except ValidationError as exc:
        preview.errors = exc.messages
        return preview
    preview.bundle, preview.hash = bundle.to_dict(), bundle.hash
    try:
        deployed = device_policy(device, Target.DEPLOYED)
    except NothingDeployed as exc:
        preview.deployed_hash = device.applied_hash
        preview.deployed_note = (
            f"nothing deployed yet: everything below is new ({exc})"
            if not device.applied_hash
            else f"{exc}: the diff shows everything as new"
        )
        preview.diff = unified_diff(None, preview.bundle, "deployed (nothing)", "to deploy")
        return preview
    preview.deployed_hash, preview.deployed_deployment = device.applied_hash, deployed.deployment_id
    if preview.unchanged:
        preview.deployed_exact = True
        return preview
    try:
        old = deployed.compile().to_dict()
    except CompilerError as exc:
        preview.deployed_note = (
            f"cannot rebuild deployment #{deployed.deployment_id}'s bundle: {exc}"
        )
        return preview
    preview.deployed_exact = old["hash"] == device.applied_hash
    if not preview.deployed_exact:
        preview.deployed_note = "the rebuilt deployed bundle differs from the hash the agent holds; the diff is approximate"
    preview.diff = unified_diff(
        old, preview.bundle, f"deployed (deployment #{deployed.deployment_id})", "to deploy"
    )
    return preview
