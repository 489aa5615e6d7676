"""Compiler over HTTP: a device's bundle, the packet tracer, analysis and validate (for CI).

Thin views: read the database through `rules.selectors.policy_dict` (the one document form),
call one function of `compiler`, render. Bad query input is a 400 naming the field; a
stored policy that does not compile is a 422 with the compiler's errors; never a 500.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

import compiler
from compiler.lower import lower_device
from core.accounts import roles
from core.accounts.permissions import CanView
from rules import importer
from rules.api.policy_views import RawBodyParser, body_format
from rules.selectors import policy_dict

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
)


class CanValidate(CanView):
    """POST /validate/ changes nothing, so every role may use it (CI tokens included)."""

    write_roles = roles.CAN_READ


def options(device=None) -> compiler.CompileOptions:
    from agents.selectors import device_compile_options

    return device_compile_options(device)


def uncompilable(exc: compiler.CompilerError) -> Response:
    return Response(
        {
            "detail": "the stored policy does not compile",
            "errors": [e.to_dict() for e in exc.errors],
        },
        status=status.HTTP_422_UNPROCESSABLE_ENTITY,
    )


def device_document(device) -> compiler.PolicyDocument:
    return compiler.PolicyDocument.from_dict(policy_dict(devices=[device]))


def _device(pk):
    from rules.models import Device

    return get_object_or_404(Device, pk=pk)


@extend_schema(
    summary="The compiled bundle of a device",
    description="What the agent would be sent now: iptables-restore text for IPv4 "
    "and IPv6, ipset restore text, per-chain hashes and the bundle hash "
    "(docs/bundle-format.md).",
    responses={200: OpenApiTypes.OBJECT, 422: OpenApiTypes.OBJECT},
)
class DeviceBundleView(APIView):
    permission_classes = [CanView]

    def get(self, request, pk):
        device = _device(pk)
        try:
            bundle = compiler.compile_device(
                device_document(device), device.name, options=options(device), now=timezone.now()
            )
        except compiler.CompilerError as exc:
            return uncompilable(exc)
        return Response(bundle.to_dict())


@extend_schema(
    summary="Trace a packet through a device's compiled policy",
    description="Walks the compiled chains as netfilter does and returns the verdict, "
    "the rule that decided it and the path. `protocol` tcp|udp|icmp|icmpv6, `state` "
    "new|established|related|invalid|untracked (default new), `chain` "
    "input|forward|output (default input).",
    parameters=[OpenApiParameter(name, OpenApiTypes.STR) for name in TRACE_PARAMS],
    responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 422: OpenApiTypes.OBJECT},
)
class DeviceTraceView(APIView):
    permission_classes = [CanView]

    def get(self, request, pk):
        device = _device(pk)
        unknown = sorted(set(request.query_params) - set(TRACE_PARAMS) - {"format"})
        errors: dict[str, list[str]] = {k: ["unknown parameter"] for k in unknown}
        try:
            packet = compiler.Packet.from_params(
                {k: request.query_params.get(k) for k in TRACE_PARAMS}
            )
        except ValueError as exc:
            for error in getattr(exc, "errors", []):
                errors.setdefault(error.path, []).append(error.message)
            if not errors:
                errors["non_field_errors"] = [str(exc)]
        if errors:
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        try:
            program = lower_device(
                device_document(device), device.name, options(device), timezone.now()
            )
        except compiler.CompilerError as exc:
            return uncompilable(exc)
        result = compiler.Tracer(program).trace(packet)
        return Response({"device": device.name, **result.to_dict()})


@extend_schema(
    summary="Analysis of a rule set",
    description="Shadowed, redundant and never-matching rules (exact, by set "
    "arithmetic), and empty groups the rule set uses.",
    responses={200: OpenApiTypes.OBJECT, 422: OpenApiTypes.OBJECT},
)
class RuleSetAnalysisView(APIView):
    permission_classes = [CanView]

    def get(self, request, pk):
        from rules.models import RuleSet

        ruleset = get_object_or_404(RuleSet, pk=pk)
        try:
            doc = compiler.PolicyDocument.from_dict(policy_dict(rulesets=[ruleset]))
        except compiler.CompilerError as exc:
            return uncompilable(exc)
        findings = compiler.analyse_ruleset(doc, ruleset.name, now=timezone.now())
        return Response({"ruleset": ruleset.name, "findings": [f.to_dict() for f in findings]})


@extend_schema(
    summary="Analysis of a device's whole policy",
    description="The same findings over the device's evaluation order: fixed steps "
    "(loopback, conntrack, anti-lockout), every rule set, the default policy.",
    responses={200: OpenApiTypes.OBJECT, 422: OpenApiTypes.OBJECT},
)
class DeviceAnalysisView(APIView):
    permission_classes = [CanView]

    def get(self, request, pk):
        device = _device(pk)
        try:
            doc = device_document(device)
        except compiler.CompilerError as exc:
            return uncompilable(exc)
        findings = compiler.analyse_device(doc, device.name, now=timezone.now())
        return Response({"device": device.name, "findings": [f.to_dict() for f in findings]})


@extend_schema(
    summary="Validate a policy document or a stored rule set (for CI)",
    description="Body: a policy document (YAML, or JSON with Content-Type "
    'application/json), or JSON {"ruleset": id} for a stored rule set. Returns '
    "`ok`, `errors`, `warnings` and `assertions`; changes nothing. `ok` is false when "
    "there are errors or a failed assertion.",
    request={"application/yaml": OpenApiTypes.STR, "application/json": OpenApiTypes.OBJECT},
    responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
)
class ValidateView(APIView):
    permission_classes = [CanValidate]
    parser_classes = [RawBodyParser]

    def post(self, request):
        try:
            data = importer.load_text(request.data or b"", fmt=body_format(request))
        except importer.ImportFailed as exc:
            return Response(exc.to_dict(), status=status.HTTP_400_BAD_REQUEST)
        if isinstance(data, dict) and set(data) == {"ruleset"}:
            from rules.models import RuleSet

            ref = data["ruleset"]
            if isinstance(ref, bool) or not isinstance(ref, (int, str)) or not str(ref).isdigit():
                return Response(
                    {"ruleset": ["must be a rule set id"]}, status=status.HTTP_400_BAD_REQUEST
                )
            ruleset = RuleSet.objects.filter(pk=int(ref)).first()
            if ruleset is None:
                return Response(
                    {"ruleset": [f"no rule set with id {ref}"]}, status=status.HTTP_400_BAD_REQUEST
                )
            data = policy_dict(rulesets=[ruleset])
            report = compiler.check_document(
                data, now=timezone.now(), options=options(), ruleset=ruleset.name
            )
            return Response(report.to_dict())
        report = compiler.check_document(data, now=timezone.now(), options=options())
        return Response(report.to_dict())
