"""A device's compiled policy over HTTP: its bundle, the packet tracer, its analysis and what
a deploy would change (the diff of candidate against deployed).

Each view asks `agents.device_policy.device_policy` for the document (the one compile path)
and says which target it shows: `?target=deployed` (what the agent holds), `candidate` (what
a deploy would push now) or `working_copy` (live edits, unapproved ones included). Bad query
input is a 400 naming the field; a policy that does not compile is a 422 with the
compiler's errors; a device with nothing deployed asked for `deployed` is a 409.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.device_policy import DevicePolicy, NothingDeployed, Target, device_policy
from compiler import CompilerError, Packet, PacketError, analyse_device
from compiler.diff import chain_diff, unified_diff
from compiler.tracer_nat import parse_local_addresses
from compiler.tracer_zones import trace_zones
from core.accounts.permissions import CanView
from core.api import validation_detail
from rules.models import Device

TRACE_PARAMS = (
    "chain",
    "protocol",
    "source",
    "destination",
    "sport",
    "dport",
    "icmp_type",
    "in_interface",
    "out_interface",
    "state",
    "hop_limit",
)
ZONE_PARAMS = ("in_zone", "out_zone")  # instead of in_/out_interface: compiler.tracer_zones
_TARGETS = [Target.DEPLOYED, Target.CANDIDATE, Target.WORKING_COPY]


def target_parameter(default: Target) -> OpenApiParameter:
    return OpenApiParameter(
        "target",
        OpenApiTypes.STR,
        enum=[str(t) for t in _TARGETS],
        description=f"which policy: deployed (what the agent holds), candidate (what a "
        f"deploy would push now: approved revisions where approval is required) or "
        f"working_copy (live edits). Default {default}.",
    )


class PolicyRefused(Exception):
    """The policy asked for cannot be shown; `response` says why."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.data)
        self.response = response


def uncompilable(exc: CompilerError) -> Response:
    return Response(
        {
            "detail": "the stored policy does not compile",
            "errors": [e.to_dict() for e in exc.errors],
        },
        status=status.HTTP_422_UNPROCESSABLE_ENTITY,
    )


def policy_for(request: Request, device: Device, default: Target) -> DevicePolicy:
    """The device's policy for the `target` query parameter, or PolicyRefused."""
    name = request.query_params.get("target") or str(default)
    if name not in {str(t) for t in _TARGETS}:
        choices = ", ".join(str(t) for t in _TARGETS)
        raise PolicyRefused(
            Response({"target": [f"must be one of {choices}"]}, status=status.HTTP_400_BAD_REQUEST)
        )
    try:
        return device_policy(device, Target(name))
    except NothingDeployed as exc:
        raise PolicyRefused(
            Response(
                {"target": [f"{exc}; ask for target=candidate"]}, status=status.HTTP_409_CONFLICT
            )
        ) from exc
    except ValidationError as exc:
        raise PolicyRefused(
            Response(validation_detail(exc), status=status.HTTP_409_CONFLICT)
        ) from exc
    except CompilerError as exc:
        raise PolicyRefused(uncompilable(exc)) from exc


@extend_schema(
    summary="The compiled bundle of a device",
    description="iptables-restore text for IPv4 and IPv6, ipset restore text, per-chain "
    "hashes and the bundle hash (docs/bundle-format.md), of the target asked for: by "
    "default the candidate, what the agent would be sent by a deploy now. `target` and "
    "`compiled_at` in the answer say what was compiled; for `deployed`, `hash_matches` says "
    "whether it is the very bundle the agent reported.",
    parameters=[target_parameter(Target.CANDIDATE)],
    responses={
        200: OpenApiTypes.OBJECT,
        400: OpenApiTypes.OBJECT,
        409: OpenApiTypes.OBJECT,
        422: OpenApiTypes.OBJECT,
    },
)
class DeviceBundleView(APIView):
    permission_classes = [CanView]

    def get(self, request, pk):
        device = get_object_or_404(Device, pk=pk)
        try:
            policy = policy_for(request, device, Target.CANDIDATE)
            bundle = policy.compile()
        except PolicyRefused as exc:
            return exc.response
        except CompilerError as exc:
            return uncompilable(exc)
        body = {**bundle.to_dict(), **policy.describe()}
        if policy.expected_hash:
            body["hash_matches"] = bundle.hash == policy.expected_hash
        return Response(body)


def _field_errors(exc: ValueError, errors: dict[str, list[str]]) -> None:
    """A `PacketError`'s messages per field into `errors` (any other: non_field_errors)."""
    found = getattr(exc, "errors", [])
    for error in found:
        errors.setdefault(error.path, []).append(error.message)
    if not found:
        errors.setdefault("non_field_errors", []).append(str(exc))


@extend_schema(
    summary="Trace a packet through a device's compiled policy",
    description="Walks the compiled chains as netfilter does and returns the verdict, "
    "the rule that decided it and the path. By default it traces what the agent holds "
    "(`target=deployed`). `protocol` tcp|udp|icmp|icmpv6, `state` "
    "new|established|related|invalid|untracked (default new), `chain` "
    "input|forward|output (default input). `hop_limit` 0-255, IPv6 only (default: 255 "
    "for neighbour discovery, ICMPv6 133-137, as senders set it; else 64): the system "
    "neighbour-discovery accepts match 255 only, as in the kernel. A new connection passes the nat table first: "
    "`nat` lists each NAT step (hook, chain, rule, tag, before → after), and `chain` is "
    "the filter chain walked (a DNAT to another host turns input into forward).",
    parameters=[
        target_parameter(Target.DEPLOYED),
        *(OpenApiParameter(name, OpenApiTypes.STR) for name in TRACE_PARAMS),
        *(
            OpenApiParameter(
                name,
                OpenApiTypes.STR,
                description=f"a zone instead of {name.replace('zone', 'interface')}: one "
                "trace per interface of the zone (a wildcard by one name it matches) under "
                "`traces`, `verdict` their common one or `mixed`",
            )
            for name in ZONE_PARAMS
        ),
        OpenApiParameter(
            "local_addresses",
            OpenApiTypes.STR,
            description="more addresses of the device besides its `address` (comma "
            "separated): where a DNAT to one of them is delivered locally, and what the "
            "management exemption's addrtype LOCAL matches",
        ),
    ],
    responses={
        200: OpenApiTypes.OBJECT,
        400: OpenApiTypes.OBJECT,
        409: OpenApiTypes.OBJECT,
        422: OpenApiTypes.OBJECT,
    },
)
class DeviceTraceView(APIView):
    permission_classes = [CanView]

    def get(self, request, pk):
        device = get_object_or_404(Device, pk=pk)
        allowed = {*TRACE_PARAMS, *ZONE_PARAMS, "format", "target", "local_addresses"}
        unknown = sorted(set(request.query_params) - allowed)
        errors: dict[str, list[str]] = {k: ["unknown parameter"] for k in unknown}
        local: tuple[str, ...] = ()
        try:
            local = parse_local_addresses(request.query_params.get("local_addresses"))
        except ValueError as exc:
            _field_errors(exc, errors)
        try:
            packet = Packet.from_params({k: request.query_params.get(k) for k in TRACE_PARAMS})
        except ValueError as exc:
            _field_errors(exc, errors)
        if errors:
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        by_zone = {
            k: request.query_params.get(k) for k in ZONE_PARAMS if request.query_params.get(k)
        }
        try:
            policy = policy_for(request, device, Target.DEPLOYED)
            tracer = policy.tracer(local)
            if by_zone:
                params = {k: request.query_params.get(k) for k in TRACE_PARAMS}
                body = trace_zones(tracer, {**params, **by_zone}, tracer.program.zones)
            else:
                body = tracer.trace(packet).to_dict()
        except PolicyRefused as exc:
            return exc.response
        except PacketError as exc:
            _field_errors(exc, errors)
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        except CompilerError as exc:
            return uncompilable(exc)
        return Response({"device": device.name, **policy.describe(), **body})


@extend_schema(
    summary="Analysis of a device's whole policy",
    description="Shadowed, redundant and never-matching rules over the device's evaluation "
    "order: fixed steps (loopback, conntrack, anti-lockout), every rule set, the default "
    "policy; of the candidate by default.",
    parameters=[target_parameter(Target.CANDIDATE)],
    responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT, 422: OpenApiTypes.OBJECT},
)
class DeviceAnalysisView(APIView):
    permission_classes = [CanView]

    def get(self, request, pk):
        device = get_object_or_404(Device, pk=pk)
        try:
            policy = policy_for(request, device, Target.CANDIDATE)
            facts = device.facts.get("interfaces") if isinstance(device.facts, dict) else None
            findings = analyse_device(
                policy.document,
                device.name,
                now=policy.now,
                interfaces=facts if isinstance(facts, list) else None,
            )
        except PolicyRefused as exc:
            return exc.response
        except CompilerError as exc:
            return uncompilable(exc)
        return Response(
            {
                "device": device.name,
                **policy.describe(),
                "findings": [f.to_dict() for f in findings],
            }
        )


@extend_schema(
    summary="What a deploy would change on a device",
    description="The candidate bundle (what a deploy would push now) against the deployed one "
    "(what the agent holds, rebuilt from its deployment and checked against the agent's hash): "
    "`unified` is a unified diff of the ipset and iptables-restore texts, `chains` lists the "
    "chains added and removed and a diff per changed chain. Nothing deployed yet: everything is "
    "added (`deployed` is null).",
    responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT, 422: OpenApiTypes.OBJECT},
)
class DeviceDiffView(APIView):
    permission_classes = [CanView]

    def get(self, request, pk):
        device = get_object_or_404(Device, pk=pk)
        try:
            candidate = policy_for(request, device, Target.CANDIDATE)
            new = candidate.compile().to_dict(rules=False)
            try:
                deployed = device_policy(device, Target.DEPLOYED)
            except NothingDeployed:
                deployed = None
            old = deployed.compile().to_dict(rules=False) if deployed is not None else None
        except PolicyRefused as exc:
            return exc.response
        except CompilerError as exc:
            return uncompilable(exc)
        return Response(
            {
                "device": device.name,
                "candidate": {**candidate.describe(), "hash": new["hash"]},
                "deployed": None
                if deployed is None or old is None
                else {
                    **deployed.describe(),
                    "hash": old["hash"],
                    "hash_matches": old["hash"] == deployed.expected_hash,
                },
                "changed": old is None or old["hash"] != new["hash"],
                "unified": unified_diff(old, new, "deployed", "candidate"),
                "chains": chain_diff(old, new),
            }
        )
