"""Policy API viewsets: each sets its queryset, serializer, filters and permission; the shared
behaviour (transactions, service-backed writes, error shapes) is in core.api_base, wired to
rules.services in rules.api.base."""

from __future__ import annotations

from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.accounts.permissions import CanEdit
from rules import filtersets, services
from rules.api.base import PolicyModelViewSet
from rules.models import (
    AddressGroup,
    AddressObject,
    NatRule,
    Rule,
    RuleSet,
    Service,
    ServiceGroup,
)
from rules.selectors import rules_queryset

from . import serializers
from .group_member_views import GroupMembersMixin
from .where_used_views import WhereUsedMixin


class AddressObjectViewSet(WhereUsedMixin, PolicyModelViewSet):
    queryset = AddressObject.objects.order_by("name")
    serializer_class = serializers.AddressObjectSerializer
    filterset_class = filtersets.AddressObjectFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "value", "description"]
    ordering_fields = ["name", "value", "created", "last_updated"]


class AddressGroupViewSet(GroupMembersMixin, WhereUsedMixin, PolicyModelViewSet):
    queryset = AddressGroup.objects.order_by("name")
    serializer_class = serializers.AddressGroupSerializer
    filterset_class = filtersets.AddressGroupFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created", "last_updated"]


class ServiceViewSet(WhereUsedMixin, PolicyModelViewSet):
    queryset = Service.objects.order_by("name")
    serializer_class = serializers.ServiceSerializer
    filterset_class = filtersets.ServiceFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "description", "icmp_type"]
    ordering_fields = ["name", "protocol", "created", "last_updated"]


class ServiceGroupViewSet(GroupMembersMixin, WhereUsedMixin, PolicyModelViewSet):
    queryset = ServiceGroup.objects.order_by("name")
    serializer_class = serializers.ServiceGroupSerializer
    filterset_class = filtersets.ServiceGroupFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created", "last_updated"]


def _count(model) -> Coalesce:
    """COUNT(*) of a related table as a subquery: two plain Counts would multiply each other."""
    sub = (
        model.objects.filter(ruleset=OuterRef("pk"))
        .order_by()
        .values("ruleset")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(sub), 0)


class RuleSetViewSet(WhereUsedMixin, PolicyModelViewSet):
    """Rule sets. Their rules: /rules/?ruleset=<id>, or /rulesets/{id}/rules/ in order, and
    /rulesets/{id}/rules/bulk/ to change thousands of them in one transaction."""

    queryset = RuleSet.objects.order_by("name").annotate(
        rule_count=_count(Rule), nat_rule_count=_count(NatRule)
    )
    serializer_class = serializers.RuleSetSerializer
    filterset_class = filtersets.RuleSetFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created", "last_updated"]

    @extend_schema(responses=serializers.RuleSerializer(many=True), filters=False)
    @action(
        detail=True,
        methods=["get"],
        url_path="rules",
        serializer_class=serializers.RuleSerializer,
        filterset_class=None,
    )
    def rules(self, request: Request, pk: str | None = None) -> Response:
        """The rule set's rules in evaluation order, paginated."""
        ruleset = self.get_object()
        page = self.paginate_queryset(rules_queryset().filter(ruleset=ruleset))
        data = serializers.RuleSerializer(
            page, many=True, context=self.get_serializer_context()
        ).data
        return self.get_paginated_response(data)

    @extend_schema(
        request=serializers.RuleBulkSerializer, responses=serializers.RuleBulkResultSerializer
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="rules/bulk",
        serializer_class=serializers.RuleBulkSerializer,
        filterset_class=None,
    )
    def rules_bulk(self, request: Request, pk: str | None = None) -> Response:
        """Delete, update, reorder and create rules in one transaction: all or nothing.

        A 400 lists every bad item by its index, e.g.
        `{"create": {"17": {"dports": ["port 70000 is out of range (1-65535)"]}}}`.
        """
        ruleset = self.get_object()
        serializer = serializers.RuleBulkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = services.rules_bulk(ruleset=ruleset, **serializer.validated_data)
        except services.BulkError as exc:
            raise ValidationError(exc.errors) from None
        body = {
            "created": [r.pk for r in result.created],
            "updated": [r.pk for r in result.updated],
            "deleted": result.deleted,
            "count": result.count,
        }
        return Response(serializers.RuleBulkResultSerializer(body).data, status=status.HTTP_200_OK)


def _rule_delete(rule: Rule) -> None:
    services.rule_delete(rule=rule)


class RuleViewSet(PolicyModelViewSet):
    """Rules of every rule set, ordered by rule set then position; filter with ?ruleset=<id>."""

    queryset = rules_queryset().order_by("ruleset__name", "position", "id")
    serializer_class = serializers.RuleSerializer
    filterset_class = filtersets.RuleFilterSet
    permission_classes = [CanEdit]
    search_fields = ["comment", "=uuid"]
    ordering_fields = ["position", "id", "created", "last_updated"]
    delete_service = staticmethod(_rule_delete)

    @extend_schema(request=serializers.RuleMoveSerializer, responses=serializers.RuleSerializer)
    @action(
        detail=True,
        methods=["post"],
        serializer_class=serializers.RuleMoveSerializer,
        filterset_class=None,
    )
    def move(self, request: Request, pk: str | None = None) -> Response:
        """Move the rule to `position` (1-based) in its rule set; the others shift."""
        rule = self.get_object()
        serializer = serializers.RuleMoveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.rule_move(rule=rule, position=serializer.validated_data["position"])
        rule = self.get_queryset().get(pk=rule.pk)
        return Response(
            serializers.RuleSerializer(rule, context=self.get_serializer_context()).data
        )


class NatRuleViewSet(PolicyModelViewSet):
    queryset = NatRule.objects.select_related("ruleset").order_by("ruleset__name", "position", "id")
    serializer_class = serializers.NatRuleSerializer
    filterset_class = filtersets.NatRuleFilterSet
    permission_classes = [CanEdit]
    search_fields = ["comment", "to"]
    ordering_fields = ["position", "id"]
