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

import bisect
import enum
import threading
from collections import Counter, OrderedDict
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
    with_nft,
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


def native_nft(device: Device) -> bool:
    """The device's agent reported the native nftables dataplane (its bundles then carry
    the `nft` script it applies; docs/agent.md)."""
    return isinstance(device.facts, dict) and device.facts.get("backend") == "nft-native"


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
        """The bundle (raises compiler.CompilerError when the document does not compile).

        A deployment's devices with the same compiled policy share one compile (see
        `_share_key`): a fleet-wide deploy compiles K bundles for K distinct policies, not N.
        """
        key = self._share_key()
        if key is None:
            return self._compile()
        with _shared_lock:  # threads of one batch task: the first compiles, the rest share
            hit = _shared.get(key)
            if hit is not None and hit[0] is self.document:
                _shared.move_to_end(key)
                COMPILES["shared"] += 1
                return hit[1].for_device(self.device.name, self.now)
            bundle = self._compile()
            COMPILES["compiled"] += 1
            _shared[key] = (self.document, bundle)
            while len(_shared) > _SHARED_MAX:
                _shared.popitem(last=False)
            return bundle

    def _compile(self) -> Bundle:
        bundle = compile_device(self.document, self.device.name, options=self.options, now=self.now)
        # an agent on the native nftables dataplane applies the bundle's `nft` script
        return with_nft(bundle) if native_nft(self.device) else bundle

    def _share_key(self) -> tuple | None:
        """What a frozen document's bundle for this device depends on besides the device's
        name: the document itself (a deployment's, parsed once per process), the device's
        entry in it without what the compiler never reads (name, address, description,
        probes), the compile options, and which rules have already expired at `now`
        (rather than `now` itself: an expiry still ahead is enforced in the kernel by its
        time match, so two compile times between the same two expiries give the same
        bundle). None where the document is not a frozen one (nothing to share)."""
        if self.target not in (Target.DEPLOYMENT, Target.DEPLOYED):
            return None
        entry = self.document.by_name["devices"].get(self.device.name)
        if entry is None:
            return None  # the compile names the unknown device
        shape = replace(entry, name="", address=None, description="", probes=())
        return (
            id(self.document),
            shape,
            self.options,
            _expired(self.document, self.now),
            native_nft(self.device),
        )

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
    recorded: dict | None = None,
) -> DevicePolicy:
    """The policy `device` gets under `target` (see the module docstring).

    Raises ValidationError (candidate: a rule set needing approval has no approved
    revision; a bad `revision`), NothingDeployed (deployed: no known bundle), and
    compiler.CompilerError when the document does not parse. `recorded`: the settings the
    deployment recorded for the device, when the caller holds its row (else read here).
    """
    target = Target(target)
    options = compile_options(device)
    if target is Target.DEPLOYMENT or deployment is not None:
        if deployment is None:
            raise ValueError("target deployment needs the deployment")
        if recorded is None:
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


def device_entries(document: dict) -> dict[str, dict]:
    """The document's device entries by name (the first of a name), for `device_settings`
    over a whole fleet: one pass instead of a search per device."""
    out: dict[str, dict] = {}
    for entry in document.get("devices", []):
        out.setdefault(entry.get("name"), entry)
    return out


def device_settings(document: dict, device: Device, entries: dict[str, dict] | None = None) -> dict:
    """What `document` sets for `device` (default policy, management sources, flags, groups,
    rule sets) plus the compile option taken from its row: what a deployment records per
    device, so it says what it pushed and compiles with the flag it was created with.
    `entries`: `device_entries(document)`, when called for many devices."""
    if entries is None:
        entries = device_entries(document)
    entry = entries.get(device.name, {})
    out: dict = {key: entry.get(key) for key in _SETTINGS}
    out |= {key: entry.get(key, True) for key in _FLAGS}
    options = compile_options(device)
    out["forward_fallthrough"] = options.forward_fallthrough
    # set compilation follows the device's facts, which change: the deployment keeps its own
    out["set_types"] = sorted(options.set_types) if options.set_compile else None
    if options.set_compile:  # nftables intervals hold wide port ranges, ipset does not
        out["set_range_max"] = options.set_range_max
    return out


def recorded_options(options: CompileOptions, recorded: dict | None) -> CompileOptions:
    """`options` with the device flag and set types a deployment recorded (older ones
    recorded none)."""
    if recorded and "forward_fallthrough" in recorded:
        options = replace(options, forward_fallthrough=bool(recorded["forward_fallthrough"]))
    if recorded and "set_types" in recorded:  # (older deployments: linear, as they were)
        types = recorded["set_types"]
        options = replace(
            options,
            set_compile=bool(types),
            set_types=frozenset(types) if types else options.set_types,
        )
    if recorded and isinstance(recorded.get("set_range_max"), int):
        options = replace(options, set_range_max=recorded["set_range_max"])
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


# Bundles shared between the devices of a frozen document (DevicePolicy.compile): key →
# (the document, so its id is not reused while the entry lives; its first device's bundle).
_SHARED_MAX = 32
_shared: OrderedDict[tuple, tuple[PolicyDocument, Bundle]] = OrderedDict()
_shared_lock = threading.Lock()
COMPILES: Counter[str] = Counter()  # "compiled" / "shared", for tests and the bench
_expiries: OrderedDict[int, tuple[PolicyDocument, list[datetime]]] = OrderedDict()


def _expired(document: PolicyDocument, now: datetime) -> int:
    """How many of the document's rule expiry times are at or before `now` (the compiler
    leaves a rule out when `expires_at <= now`): equal counts, equal sets of expired rules."""
    held = _expiries.get(id(document))
    if held is None or held[0] is not document:
        times = sorted(
            r.expires_at for rs in document.rulesets for r in rs.rules if r.expires_at is not None
        )
        held = _expiries[id(document)] = (document, times)
        while len(_expiries) > 8:
            _expiries.popitem(last=False)
    return bisect.bisect_right(held[1], now)


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
