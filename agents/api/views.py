"""Device and device group viewsets (deployments and enrollment live in deploy_views.py)."""

from __future__ import annotations

from django.db.models import Count, Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from agents import filtersets
from core.accounts.permissions import CanEdit
from rules.api.base import PolicyModelViewSet
from rules.api.device_change_serializers import PendingDeviceChangeSerializer
from rules.models import Device, DeviceChangeStatus, DeviceGroup, PendingDeviceChange

from . import serializers

_UPDATED = {
    200: serializers.DeviceSerializer,
    202: PendingDeviceChangeSerializer,
}


class DeviceViewSet(PolicyModelViewSet):
    """Devices. An edit of what a device enforces, where a rule set on it requires approval,
    answers 202 with the pending change (the device keeps its approved settings until
    another approver approves it: /device-changes/{id}/approve/)."""

    queryset = Device.objects.order_by("name").prefetch_related(
        "group_links__group",
        "ruleset_links__ruleset",
        Prefetch(
            "pending_changes",
            queryset=PendingDeviceChange.objects.filter(status=DeviceChangeStatus.PENDING),
            to_attr="held_changes",
        ),
    )
    serializer_class = serializers.DeviceSerializer
    filterset_class = filtersets.DeviceFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "address", "description"]
    ordering_fields = ["name", "address", "status", "last_seen_at", "created", "last_updated"]

    @extend_schema(responses=_UPDATED)
    def update(self, request: Request, *args, **kwargs) -> Response:
        """Update a device: 200 with it, or 202 with the change held for approval."""
        response = super().update(request, *args, **kwargs)
        held = getattr(self, "held", None)
        if held is None:
            return response
        return Response(PendingDeviceChangeSerializer(held).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=_UPDATED)
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        """Update some fields of a device: 200 with it, or 202 with the change held."""
        return super().partial_update(request, *args, **kwargs)

    def perform_update(self, serializer: serializers.DeviceSerializer) -> None:
        super().perform_update(serializer)
        self.held = getattr(serializer, "held", None)


class DeviceGroupViewSet(PolicyModelViewSet):
    queryset = (
        DeviceGroup.objects.order_by("name")
        .prefetch_related("ruleset_links__ruleset")
        .annotate(device_count=Count("device_links"))
    )
    serializer_class = serializers.DeviceGroupSerializer
    filterset_class = filtersets.DeviceGroupFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created", "last_updated"]
