"""Compiler over HTTP for policy: rule set analysis and validate (for CI). A device's
bundle, trace and analysis go through the one compile path: agents/api/compiled_views.py.

Thin views: read the database through `rules.selectors.policy_dict` (the one document form),
call one function of `compiler`, render. Bad query input is a 400 naming the field; a
stored policy that does not compile is a 422 with the compiler's errors; never a 500.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

import compiler
from core.accounts import roles
from core.accounts.permissions import CanView
from rules import importer
from rules.api.policy_views import RawBodyParser, body_format
from rules.api.where_used_serializers import UnusedSerializer
from rules.compile_options import compile_options
from rules.models import RuleSet
from rules.selectors import policy_dict
from rules.where_used import unused_for_ruleset


class CanValidate(CanView):
    """POST /validate/ changes nothing, so every role may use it (CI tokens included)."""

    write_roles = roles.CAN_READ


def uncompilable(exc: compiler.CompilerError) -> Response:
    return Response(
        {
            "detail": "the stored policy does not compile",
            "errors": [e.to_dict() for e in exc.errors],
        },
        status=status.HTTP_422_UNPROCESSABLE_ENTITY,
    )


@extend_schema(
    summary="Analysis of a rule set",
    description="Shadowed, redundant and never-matching rules (exact, by set "
    "arithmetic), empty groups the rule set uses, and `unused`: the objects nothing uses "
    "fleet-wide, even through groups (addresses, services, their groups, zones), and this "
    "rule set when no device applies it (the rows of GET /objects/unused/).",
    responses={200: OpenApiTypes.OBJECT, 422: OpenApiTypes.OBJECT},
)
class RuleSetAnalysisView(APIView):
    permission_classes = [CanView]

    def get(self, request, pk):
        ruleset = get_object_or_404(RuleSet, pk=pk)
        try:
            doc = compiler.PolicyDocument.from_dict(policy_dict(rulesets=[ruleset]))
        except compiler.CompilerError as exc:
            return uncompilable(exc)
        findings = compiler.analyse_ruleset(doc, ruleset.name, now=timezone.now())
        unused = UnusedSerializer(unused_for_ruleset(ruleset), many=True).data
        return Response(
            {
                "ruleset": ruleset.name,
                "findings": [f.to_dict() for f in findings],
                "unused": unused,
            }
        )


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
            ref = data["ruleset"]
            if isinstance(ref, bool) or not isinstance(ref, (int, str)) or not str(ref).isdecimal():
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
                data, now=timezone.now(), options=compile_options(), ruleset=ruleset.name
            )
            return Response(report.to_dict())
        report = compiler.check_document(data, now=timezone.now(), options=compile_options())
        return Response(report.to_dict())
