"""Device and device group viewsets (deployments and enrollment live in deploy_views.py)."""

from __future__ import annotations

from django.db.models import Count, Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from agents import filtersets
from core.accounts.permissions import CanEdit
from rules.api.base import PolicyModelViewSet
from rules.api.device_change_serializers import PendingDeviceChangeSerializer
from rules.api.where_used_views import WhereUsedMixin
from rules.models import Device, DeviceChangeStatus, DeviceGroup, PendingDeviceChange

from . import serializers


def _held_changes() -> Prefetch:
    """The pending change of each listed device or group, in one query."""
    return Prefetch(
        "pending_changes",
        queryset=PendingDeviceChange.objects.filter(status=DeviceChangeStatus.PENDING),
        to_attr="held_changes",
    )


class HoldingViewSet(PolicyModelViewSet):
    """An update the serializer held for approval (`serializer.held`) answers 202 with the
    pending change instead of the object, which keeps its approved settings."""

    abstract = True

    def update(self, request: Request, *args, **kwargs) -> Response:
        response = super().update(request, *args, **kwargs)
        held = getattr(self, "held", None)
        if held is None:
            return response
        return Response(PendingDeviceChangeSerializer(held).data, status=status.HTTP_202_ACCEPTED)

    def perform_update(self, serializer: drf_serializers.BaseSerializer) -> None:
        super().perform_update(serializer)
        self.held = getattr(serializer, "held", None)


_DEVICE_UPDATED = {200: serializers.DeviceSerializer, 202: PendingDeviceChangeSerializer}
_GROUP_UPDATED = {200: serializers.DeviceGroupSerializer, 202: PendingDeviceChangeSerializer}


class DeviceViewSet(HoldingViewSet):
    """Devices. An edit of what a device enforces, where a rule set on it requires approval,
    answers 202 with the pending change (the device keeps its approved settings until
    another approver approves it: /device-changes/{id}/approve/)."""

    queryset = Device.objects.order_by("name").prefetch_related(
        "group_links__group", "ruleset_links__ruleset", _held_changes()
    )
    serializer_class = serializers.DeviceSerializer
    filterset_class = filtersets.DeviceFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "address", "description"]
    ordering_fields = ["name", "address", "status", "last_seen_at", "created", "last_updated"]

    @extend_schema(responses=_DEVICE_UPDATED)
    def update(self, request: Request, *args, **kwargs) -> Response:
        """Update a device: 200 with it, or 202 with the change held for approval."""
        return super().update(request, *args, **kwargs)

    @extend_schema(responses=_DEVICE_UPDATED)
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        """Update some fields of a device: 200 with it, or 202 with the change held."""
        return super().partial_update(request, *args, **kwargs)


class DeviceGroupViewSet(WhereUsedMixin, HoldingViewSet):
    """Device groups. A change of a group's rule sets that affects a device under approval
    answers 202 with the pending change."""

    queryset = (
        DeviceGroup.objects.order_by("name")
        .prefetch_related("ruleset_links__ruleset", _held_changes())
        .annotate(device_count=Count("device_links"))
    )
    serializer_class = serializers.DeviceGroupSerializer
    filterset_class = filtersets.DeviceGroupFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created", "last_updated"]

    @extend_schema(responses=_GROUP_UPDATED)
    def update(self, request: Request, *args, **kwargs) -> Response:
        """Update a device group: 200 with it, or 202 with the change held for approval."""
        return super().update(request, *args, **kwargs)

    @extend_schema(responses=_GROUP_UPDATED)
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        """Update some fields of a device group: 200, or 202 with the change held."""
        return super().partial_update(request, *args, **kwargs)
