"""The one path from a device to what gets compiled for it.

Every compile of a device goes through `device_policy`: the deploy worker, the API's bundle,
trace and analysis views, the dashboard's preview and tracer, and assertions. Three targets,
always named in what is shown:

- `deployed`: what the agent holds now, i.e. the document of the deployment whose bundle
  the agent applied, compiled at the moment the worker compiled it (so the hash matches
  the agent's, which `DevicePolicy.hash_matches` checks);
- `candidate`: what a deploy would push now: each rule set's deployable revision (the
  approved one where approval is required), nothing written;
- `working_copy`: the live rows, unapproved edits included (for editing, never deployed).

A deployment compiles from the document frozen at its creation (`for_deployment`), which is
the candidate of that moment: the equality test in tests/agents/test_device_policy.py
compiles one device through every path and requires the same bundle hash.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agents.choices import DeviceDeploymentState
from agents.models import Deployment, DeviceDeployment
from compiler import (
    Bundle,
    CompileOptions,
    PolicyDocument,
    Tracer,
    compile_device,
    device_assertions,
    gc_paused,
    lower_device,
)
from compiler.ir import Program
from rules.compile_options import compile_options
from rules.models import Device, RuleSetRevision
from rules.revisions import Deployable, candidate_document, deployable_policy
from rules.selectors import policy_dict


class Target(enum.StrEnum):
    DEPLOYED = "deployed"
    CANDIDATE = "candidate"
    WORKING_COPY = "working_copy"
    DEPLOYMENT = "deployment"  # a deployment's frozen document (the worker)


class NothingDeployed(LookupError):
    """The device holds no bundle the console knows the document of."""


@dataclass(frozen=True)
class DevicePolicy:
    """A device's policy document, parsed, with the options and the time to compile it at."""

    device: Device
    target: Target
    document: PolicyDocument
    options: CompileOptions
    now: datetime
    deployment_id: int | None = None
    expected_hash: str = ""  # deployed: the hash the agent reported

    def compile(self) -> Bundle:
        """The bundle (raises compiler.CompilerError when the document does not compile)."""
        return compile_device(self.document, self.device.name, options=self.options, now=self.now)

    def program(self) -> Program:
        """The neutral chain model the renderer writes and the tracer walks."""
        with gc_paused():
            return lower_device(self.document, self.device.name, self.options, self.now)

    def tracer(self, local_addresses: tuple[str, ...] = ()) -> Tracer:
        """Traces as the kernel answers now: an expired rule's time match no longer matches.
        The device's own addresses (NAT's addrtype LOCAL, the route after a DNAT): its
        `address`, where its agent listens, and `local_addresses`."""
        local = (self.device.address, *local_addresses)
        return Tracer(self.program(), now=timezone.now(), local_addresses=local)

    def failed_assertions(self) -> list[str]:
        """Messages of the device's rule set assertions that fail against this policy."""
        rulesets = self.document.device_rulesets(self.document.device(self.device.name))
        if not any(rs.assertions for rs in rulesets):
            return []
        results = device_assertions(
            self.document, self.device.name, now=self.now, options=self.options
        )
        return [r.message() for r in results if not r.passed]

    def describe(self) -> dict:
        """What the API and the dashboard say about the target they show."""
        out: dict = {"target": str(self.target), "compiled_at": self.now.isoformat()}
        if self.deployment_id is not None:
            out["deployment"] = self.deployment_id
        return out


def device_policy(
    device: Device,
    target: Target | str = Target.CANDIDATE,
    *,
    deployment: Deployment | None = None,
    revision: int | None = None,
    now: datetime | None = None,
) -> DevicePolicy:
    """The policy `device` gets under `target` (see the module docstring).

    Raises ValidationError (candidate: a rule set needing approval has no approved
    revision; a bad `revision`), NothingDeployed (deployed: no known bundle), and
    compiler.CompilerError when the document does not parse.
    """
    target = Target(target)
    options = compile_options(device)
    if target is Target.DEPLOYMENT or deployment is not None:
        if deployment is None:
            raise ValueError("target deployment needs the deployment")
        recorded = (
            DeviceDeployment.objects.filter(deployment=deployment, device=device)
            .values_list("settings", flat=True)
            .first()
        )
        return DevicePolicy(
            device,
            Target.DEPLOYMENT,
            deployment_policy(deployment),
            recorded_options(options, recorded),
            now or timezone.now(),
            deployment.pk,
        )
    if target is Target.DEPLOYED:
        return _deployed(device, options)
    if target is Target.WORKING_COPY:
        data = policy_dict(devices=[device])
    else:
        data = candidate_document([device], revisions=_chosen(revision))
    return DevicePolicy(
        device, target, PolicyDocument.from_dict(data), options, now or timezone.now()
    )


def frozen_document(devices: list[Device], revision: int | None = None) -> Deployable:
    """The document a new deployment to `devices` freezes: the candidate, with revisions
    recorded for any rule set whose live content changed without one (writes; call it in
    the deployment's transaction), and the revision each rule set of it comes from."""
    return deployable_policy(devices, revisions=_chosen(revision))


_SETTINGS = ("groups", "rulesets", "default_policy", "management_sources")
_FLAGS = ("stateful", "allow_loopback")


def device_settings(document: dict, device: Device) -> dict:
    """What `document` sets for `device` (default policy, management sources, flags, groups,
    rule sets) plus the compile option taken from its row: what a deployment records per
    device, so it says what it pushed and compiles with the flag it was created with."""
    entry = next((d for d in document.get("devices", []) if d.get("name") == device.name), {})
    out: dict = {key: entry.get(key) for key in _SETTINGS}
    out |= {key: entry.get(key, True) for key in _FLAGS}
    out["forward_fallthrough"] = compile_options(device).forward_fallthrough
    return out


def recorded_options(options: CompileOptions, recorded: dict | None) -> CompileOptions:
    """`options` with the device flag a deployment recorded (older ones recorded none)."""
    if recorded and "forward_fallthrough" in recorded:
        return replace(options, forward_fallthrough=bool(recorded["forward_fallthrough"]))
    return options


def _chosen(revision: int | None) -> list[RuleSetRevision]:
    if revision is None:
        return []
    chosen = RuleSetRevision.objects.filter(pk=revision).first()
    if chosen is None:
        raise ValidationError({"revision": [f"unknown rule set revision {revision}"]})
    return [chosen]


_parsed: OrderedDict[tuple[int, str], PolicyDocument] = OrderedDict()


def deployment_policy(deployment: Deployment) -> PolicyDocument:
    """The parsed document of a deployment, parsed once per process (LRU of 4): every
    device of a 1,000-device deployment compiles from one parse.

    Keyed by id and creation time: a rolled-back test database may hand out an id again.
    """
    key = (deployment.pk, deployment.created_at.isoformat())
    doc = _parsed.get(key)
    if doc is None:
        data = Deployment.objects.values_list("document", flat=True).get(pk=deployment.pk)
        if data is None:
            raise ValidationError({"document": ["this deployment has no policy document"]})
        doc = PolicyDocument.from_dict(data)
        _parsed[key] = doc
        while len(_parsed) > 4:
            _parsed.popitem(last=False)
    else:
        _parsed.move_to_end(key)
    return doc


_HELD = (
    DeviceDeploymentState.CONFIRMED,
    DeviceDeploymentState.APPLIED,
    DeviceDeploymentState.UNCHANGED,
)


def _deployed(device: Device, options: CompileOptions) -> DevicePolicy:
    if not device.applied_hash:
        raise NothingDeployed(f"{device.name} has no applied bundle yet")
    dd = (
        DeviceDeployment.objects.filter(
            device=device, bundle_hash=device.applied_hash, state__in=_HELD
        )
        .select_related("deployment")
        .defer("deployment__document")
        .order_by("-id")
        .first()
    )
    if dd is None:
        raise NothingDeployed(
            f"{device.name} holds bundle {device.applied_hash[:12]}, which no deployment "
            "of this console made"
        )
    return DevicePolicy(
        device,
        Target.DEPLOYED,
        deployment_policy(dd.deployment),
        recorded_options(options, dd.settings),
        compiled_at(dd),
        dd.deployment_id,
        device.applied_hash,
    )


def compiled_at(dd: DeviceDeployment) -> datetime:
    """When the worker compiled this device deployment's bundle: the stamp of its last
    compiling step, which the worker compiles as of (agents/services/device_run.py). So the
    deployed policy is compiled as of then: a rule that expired since is still in the
    kernel, and the tracer must say so."""
    for item in reversed(dd.transitions or []):
        if item.get("state") == DeviceDeploymentState.COMPILING:
            parsed = parse_datetime(item.get("at") or "")
            if parsed is not None:
                return parsed
    return dd.started_at or dd.created_at
