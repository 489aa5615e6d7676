"""What a deployment pushed (the revision of each rule set, each device's settings) and how
it differs from what a deploy would push now (the candidate), for its detail page."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from agents.device_policy import device_settings
from agents.models import Deployment
from rules.revisions import deployable_policy

#: Devices compared with the candidate on one page (the candidate reads the whole policy).
COMPARED = 50


@dataclass
class RevisionRow:
    ruleset: str
    pushed: dict | None
    candidate: dict | None

    @property
    def differs(self) -> bool:
        return (self.pushed or {}).get("hash") != (self.candidate or {}).get("hash")


@dataclass
class DeviceRow:
    device_id: int
    name: str
    settings: dict
    first_ruleset_id: int | None
    changed: dict[str, tuple] = field(default_factory=dict)  # setting -> (pushed, candidate)


@dataclass
class Pushed:
    revisions: list[RevisionRow]
    devices: list[DeviceRow]
    candidate_error: str = ""
    compared: bool = True  # False: too many devices to compare on one page

    @property
    def differs(self) -> bool:
        return any(r.differs for r in self.revisions) or any(d.changed for d in self.devices)


def deployment_pushed(deployment: Deployment) -> Pushed:
    """The deployment's recorded revisions and device settings beside the candidate's."""
    dds = list(
        deployment.device_deployments.select_related("device")
        .prefetch_related("device__ruleset_links")
        .order_by("device__name")
    )
    devices = [
        DeviceRow(
            dd.device_id,
            dd.device.name,
            dd.settings or {},
            next((link.ruleset_id for link in dd.device.ruleset_links.all()), None),
        )
        for dd in dds
    ]
    pushed = Pushed([], devices, compared=len(dds) <= COMPARED)
    candidate: dict[str, dict] = {}
    if pushed.compared and dds:
        try:
            now = deployable_policy([dd.device for dd in dds], capture=False)
        except ValidationError as exc:
            pushed.candidate_error = "; ".join(exc.messages)
        else:
            candidate = now.revisions
            for row, dd in zip(devices, dds, strict=True):
                settings = device_settings(now.document, dd.device)
                row.changed = {
                    k: (row.settings.get(k), v)
                    for k, v in settings.items()
                    if row.settings and row.settings.get(k) != v
                }
    names = sorted(set(deployment.revisions or {}) | set(candidate))
    pushed.revisions = [
        RevisionRow(n, (deployment.revisions or {}).get(n), candidate.get(n)) for n in names
    ]
    return pushed
