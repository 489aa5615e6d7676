"""Where-used for every object kind (/api/v1/<kind>/{id}/where-used/) and the fleet-wide
report of unused objects (/api/v1/objects/unused/): reads of rules.where_used, any role."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.accounts.permissions import CanView
from rules.where_used import unused_objects, where_used

from .where_used_serializers import UnusedReportSerializer, WhereUsedSerializer

UNUSED_KINDS = ("address", "address group", "service", "service group", "zone", "rule set")


class WhereUsedMixin:
    """Adds GET …/{id}/where-used/ to a policy object viewset."""

    @extend_schema(responses=WhereUsedSerializer, filters=False)
    @action(
        detail=True,
        methods=["get"],
        url_path="where-used",
        serializer_class=WhereUsedSerializer,
        filterset_class=None,
        pagination_class=None,
    )
    def where_used(self, request: Request, pk: str | None = None) -> Response:
        """Everything that uses this object, transitively (groups that contain it, rules and
        NAT rules naming it or those groups, their rule sets, the devices and device groups
        applying them, management sources), each with its path."""
        obj = self.get_object()  # type: ignore[attr-defined]
        uses = where_used(obj)
        body = {
            "kind": obj._meta.verbose_name,
            "id": obj.pk,
            "name": obj.name,
            "used": bool(uses),
            "users": uses,
        }
        return Response(WhereUsedSerializer(body).data)


class UnusedObjectsView(APIView):
    """Addresses, services, their groups, zones and rule sets that nothing uses, even through
    groups (an address only in unused groups is listed; a rule set counts as used once it
    reaches a device). Narrow with ?kind=address (repeatable)."""

    permission_classes = [CanView]

    @extend_schema(
        responses=UnusedReportSerializer,
        parameters=[
            OpenApiParameter("kind", str, many=True, enum=UNUSED_KINDS, required=False),
        ],
    )
    def get(self, request: Request) -> Response:
        extra = sorted(set(request.query_params) - {"kind", "format"})
        if extra:
            raise ValidationError(
                {n: ["unknown query parameter (known here: kind)"] for n in extra}
            )
        kinds = request.query_params.getlist("kind")
        bad = sorted(set(kinds) - set(UNUSED_KINDS))
        if bad:
            raise ValidationError({"kind": [f"unknown kind {b!r}" for b in bad]})
        rows = [u for u in unused_objects() if not kinds or u.kind in kinds]
        return Response(UnusedReportSerializer({"count": len(rows), "results": rows}).data)
