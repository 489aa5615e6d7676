"""The zones resource (/api/v1/zones/): named interface lists (and optional networks) that
rules and NAT rules use for in/out. Renames follow into the rules; a delete while rules use
the zone is a 409 naming them (rules.services.zones); where-used like every object kind."""

from __future__ import annotations

import django_filters as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.accounts.permissions import CanEdit
from rules.api.base import PolicyModelSerializer, PolicyModelViewSet
from rules.filtersets import NAME_LOOKUPS
from rules.models import Zone
from rules.services import zone_delete, zone_save, zone_users

from .where_used_views import WhereUsedMixin


class ZoneSerializer(PolicyModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="zone-detail")
    interfaces = serializers.ListField(
        child=serializers.CharField(max_length=64, trim_whitespace=True),
        help_text='interface names, a trailing "+" a wildcard: ["eth1", "veth+"]',
    )
    networks = serializers.ListField(
        child=serializers.CharField(max_length=100, trim_whitespace=True),
        required=False,
        help_text="optional: in_zone matches only sources in these (address, CIDR or range), "
        'out_zone only destinations: ["198.18.1.0/24"]; empty = any address',
    )

    save_service = staticmethod(zone_save)

    class Meta:
        model = Zone
        fields = [
            "id",
            "url",
            "name",
            "interfaces",
            "networks",
            "description",
            "created",
            "last_updated",
        ]


class ZoneFilterSet(filters.FilterSet):
    interface = filters.CharFilter(method="filter_interface", label="lists this interface")

    class Meta:
        model = Zone
        fields = {"name": NAME_LOOKUPS, "description": ["icontains"]}

    def filter_interface(self, queryset, name: str, value: str):
        # in Python: SQLite has no JSON containment lookup, and zones are few
        ids = [pk for pk, ifaces in queryset.values_list("pk", "interfaces") if value in ifaces]
        return queryset.filter(pk__in=ids)


class ZoneUsersSerializer(serializers.Serializer):
    users = serializers.ListField(child=serializers.CharField())


class ZoneViewSet(WhereUsedMixin, PolicyModelViewSet):
    queryset = Zone.objects.order_by("name")
    serializer_class = ZoneSerializer
    filterset_class = ZoneFilterSet
    permission_classes = [CanEdit]
    delete_service = staticmethod(zone_delete)
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created", "last_updated"]

    @extend_schema(
        summary="The rules and NAT rules that use the zone", responses=ZoneUsersSerializer
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def users(self, request: Request, pk: str | None = None) -> Response:
        return Response({"users": zone_users(self.get_object())})
