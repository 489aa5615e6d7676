"""GET /api/v1/: the API root, listing every resource's URL."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView


class ApiRootView(APIView):
    """GET /api/v1/: every resource's list URL, by resource name (any signed-in role).

    The project names the resources (`resources`: name -> URL name); the platform only
    renders them, so it stays free of domain imports.
    """

    permission_classes = [IsAuthenticated]
    resources: dict[str, str] = {}

    @extend_schema(
        responses={200: {"type": "object", "additionalProperties": {"type": "string"}}},
        tags=["root"],
        filters=False,
    )
    def get(self, request: Request) -> Response:
        return Response(
            {name: reverse(url, request=request) for name, url in self.resources.items()}
        )
