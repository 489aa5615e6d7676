"""Deployments, enrollment and rule counters over HTTP. Views parse, call one service, render."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from agents import selectors, services
from agents.models import Deployment, DeviceDeployment, RuleCounter
from core.accounts.permissions import CanDeploy, CanEdit, CanView
from core.api_base import Conflict, ErrorSerializer, ETagMixin
from core.idempotency.views import idempotent
from rules.models import Device, Rule

from .deploy_serializers import (
    DeploymentCancelSerializer,
    DeploymentCreateSerializer,
    DeploymentDetailSerializer,
    DeploymentResumeSerializer,
    DeploymentSerializer,
    EnrollAnswerSerializer,
    EnrollmentTokenCreateSerializer,
    EnrollmentTokenSerializer,
    EnrollSerializer,
    RuleCounterSerializer,
    UnusedRuleSerializer,
)

_REFUSED = OpenApiResponse(
    ErrorSerializer, description="the deployment's status does not allow it (the reason is given)"
)


class DeploymentViewSet(
    ETagMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Create a deployment (202, work happens in Celery), watch every device's state, and
    resume or cancel its rollout."""

    queryset = (
        Deployment.objects.defer("document")
        .select_related("created_by")
        .prefetch_related(
            Prefetch(
                "device_deployments", queryset=DeviceDeployment.objects.select_related("device")
            )
        )
    )
    filterset_fields = ["status", "trigger"]
    ordering_fields = ["id", "created_at"]
    search_fields: list[str] = []
    DEPLOY_ACTIONS = ("create", "resume", "cancel")

    def get_permissions(self) -> list[BasePermission]:
        return [CanDeploy()] if self.action in self.DEPLOY_ACTIONS else [CanView()]

    def get_serializer_class(self):  # noqa: ANN201 - DRF hook
        if self.action == "create":
            return DeploymentCreateSerializer
        return DeploymentDetailSerializer if self.action == "retrieve" else DeploymentSerializer

    @extend_schema(request=DeploymentCreateSerializer, responses={202: DeploymentDetailSerializer})
    @idempotent
    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = DeploymentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = services.deploy_create(user=request.user, **serializer.validated_data)
        deployment = self.get_queryset().get(pk=deployment.pk)
        return Response(
            DeploymentDetailSerializer(deployment).data, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(
        request=DeploymentResumeSerializer,
        responses={200: DeploymentDetailSerializer, 409: _REFUSED},
        description="Restart a halted rollout: the waves after the failed one proceed; the "
        "failed wave's devices are pushed again only with `retry_failed`. 409 unless halted.",
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        params = DeploymentResumeSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        return self._control(services.deployment_resume, pk, request, **params.validated_data)

    @extend_schema(
        request=DeploymentCancelSerializer,
        responses={200: DeploymentDetailSerializer, 409: _REFUSED},
        description="Stop a queued, running or halted rollout: devices still waiting end "
        "`skipped`, pushes on the wire finish. 409 once it has ended.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        params = DeploymentCancelSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        return self._control(services.deployment_cancel, pk, request, **params.validated_data)

    def _control(
        self, service: Callable[..., Deployment], pk: str, request: Request, **params
    ) -> Response:
        """Call a rollout control for the deployment `pk`; its refusal is a 409."""
        deployment = get_object_or_404(Deployment.objects.only("pk"), pk=pk)
        try:
            service(deployment_id=deployment.pk, user=request.user, **params)
        except services.RolloutStateError as exc:
            raise Conflict(detail={"non_field_errors": [str(exc)]}) from None
        return Response(DeploymentDetailSerializer(self.get_queryset().get(pk=deployment.pk)).data)


class EnrollmentTokenCreateView(APIView):
    """A one-time enrollment token for one device; the clear text is in this answer only."""

    permission_classes = [CanEdit]

    @extend_schema(
        request=EnrollmentTokenCreateSerializer, responses={201: EnrollmentTokenSerializer}
    )
    def post(self, request: Request, pk: int) -> Response:
        device = get_object_or_404(Device, pk=pk)
        params = EnrollmentTokenCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        issued = services.enrollment_token_create(
            device=device, user=request.user, ttl=params.validated_data.get("ttl")
        )
        body = {
            "token": issued.token,
            "device": device.name,
            "device_id": device.pk,
            "expires_at": issued.record.expires_at,
        }
        return Response(
            EnrollmentTokenSerializer(body).data,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class HasEnrollmentToken(BasePermission):
    """The request carries a one-time enrollment token that is unused and unexpired.

    Agents have no user account: this token is their only credential, and it names the
    device. The service spends it atomically; this check refuses early and cheaply.
    """

    message = "invalid, expired or already used enrollment token"

    def has_permission(self, request: Request, view: APIView) -> bool:
        token = request.data.get("token") if hasattr(request.data, "get") else None
        record = selectors.enrollment_token_lookup(token) if isinstance(token, str) else None
        request.enrollment_token = record
        return record is not None


class EnrollView(APIView):
    """POST /api/v1/agents/enroll/: an agent binds its key and certificate to its device."""

    authentication_classes: list = []
    permission_classes = [HasEnrollmentToken]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "enroll"

    def initial(self, request: Request, *args, **kwargs) -> None:
        # DRF checks permissions before throttles; here the permission IS the secret, so
        # throttle first: wrong guesses must count too.
        self.check_throttles(request)
        request._enroll_throttled = True
        super().initial(request, *args, **kwargs)

    def check_throttles(self, request: Request) -> None:
        if not getattr(request, "_enroll_throttled", False):
            super().check_throttles(request)

    @extend_schema(request=EnrollSerializer, responses={201: EnrollAnswerSerializer})
    def post(self, request: Request) -> Response:
        serializer = EnrollSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        answer = services.agent_enroll(**serializer.validated_data)
        return Response(EnrollAnswerSerializer(answer).data, status=status.HTTP_201_CREATED)


class RuleCounterList(generics.ListAPIView):
    """Stored per-rule traffic totals (reset-proof), filterable by device and rule UUID."""

    permission_classes = [CanView]
    serializer_class = RuleCounterSerializer
    queryset = RuleCounter.objects.select_related("device")
    filterset_fields = ["device", "rule_uuid"]
    ordering_fields = ["packets", "bytes", "last_hit_at"]
    search_fields: list[str] = []


class UnusedRulesView(generics.GenericAPIView):
    """Enabled rules with no hit on any device within the chosen window (days), of one
    rule set (`ruleset`: id or name) or of all, a page at a time (the API's pagination;
    `window_days` and `since` beside the page)."""

    permission_classes = [CanView]
    serializer_class = UnusedRuleSerializer
    queryset = Rule.objects.none()  # names the model for the schema; rows come from a selector

    @extend_schema(
        parameters=[
            OpenApiParameter("days", int, description="window in days (default 30)"),
            OpenApiParameter("ruleset", str, description="only this rule set (id or name)"),
        ],
        responses=UnusedRuleSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        try:
            days = int(params.get("days", 30))
        except ValueError:
            raise ValidationError({"days": ["must be a whole number of days"]}) from None
        if not 1 <= days <= 3650:
            raise ValidationError({"days": ["must be 1..3650"]})
        ruleset = None
        if params.get("ruleset"):
            ruleset = selectors.ruleset_lookup(params["ruleset"])
            if ruleset is None:
                raise ValidationError({"ruleset": [f"unknown rule set {params['ruleset']!r}"]})
        since = timezone.now() - timedelta(days=days)
        page = self.paginate_queryset(selectors.unused_rules_query(since=since, ruleset=ruleset))
        rows = [selectors.unused_rule_row(rule) for rule in page or ()]
        response = self.get_paginated_response(self.get_serializer(rows, many=True).data)
        response.data["window_days"] = days
        response.data["since"] = since
        return response
