"""Device and device group viewsets (deployments and enrollment live in deploy_views.py)."""

from __future__ import annotations

from django.db.models import Count

from agents import filtersets
from core.accounts.permissions import CanEdit
from rules.api.base import PolicyModelViewSet
from rules.models import Device, DeviceGroup

from . import serializers


class DeviceViewSet(PolicyModelViewSet):
    queryset = Device.objects.order_by("name").prefetch_related(
        "group_links__group", "ruleset_links__ruleset"
    )
    serializer_class = serializers.DeviceSerializer
    filterset_class = filtersets.DeviceFilterSet
    permission_classes = [CanEdit]
    search_fields = ["name", "address", "description"]
    ordering_fields = ["name", "address", "status", "last_seen_at", "created", "last_updated"]


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
