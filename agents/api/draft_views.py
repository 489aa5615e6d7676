"""POST /api/v1/rulesets/{id}/analyse-draft/: the findings a rule would get, before it is saved.

The rule editor asks this while a rule is typed (agents.draft_analysis says what runs).
Nothing is stored and nothing is audited; a half-typed rule is a 400 naming its fields.
Editors' route (CanEdit): it is the editor's question, though it changes nothing.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from agents.draft_analysis import analyse_draft
from core.accounts.permissions import CanEdit
from rules.api.serializers import RuleWriteSerializer
from rules.models import Rule, RuleSet


class DraftRequestSerializer(serializers.Serializer):
    rule = RuleWriteSerializer(help_text="the draft, as a rule is written through /rules/")
    replaces = serializers.IntegerField(
        required=False, help_text="id of the rule being edited (left out: a new rule)"
    )
    position = serializers.IntegerField(
        min_value=1, required=False, help_text="1-based; left out: last, or the edited rule's"
    )


@extend_schema(
    summary="Analyse a draft rule without saving it",
    description="The draft is validated like a rule write, put into the rule set's working "
    "copy (at `position`, or in place of the rule `replaces`), and analysed like a save: the "
    "rule set alone, and every device applying it (findings caused by another rule set or a "
    "device's fixed steps have `source: device` and name the devices). Only findings naming "
    "the draft are returned. Stores nothing.",
    request=DraftRequestSerializer,
    responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
)
class RuleSetDraftAnalysisView(APIView):
    permission_classes = [CanEdit]
    # the editor asks about every 300 ms while typing; a script asking faster gets a 429
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "draft"

    def post(self, request, pk):
        ruleset = get_object_or_404(RuleSet, pk=pk)
        body = DraftRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        editing = None
        if data.get("replaces") is not None:
            editing = Rule.objects.filter(pk=data["replaces"], ruleset=ruleset).first()
            if editing is None:
                return Response(
                    {"replaces": ["no such rule in this rule set"]},
                    status=status.HTTP_400_BAD_REQUEST,
                )
        # a Django ValidationError (the rule's own checks) becomes a field-keyed 400
        result = analyse_draft(
            ruleset, dict(data["rule"]), editing=editing, position=data.get("position")
        )
        return Response({"ruleset": ruleset.name, **result.to_dict()})
