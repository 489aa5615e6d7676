"""Read-only audit API: list/search, verify, streamed export. Nothing here writes entries."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.filters import OrderingFilter
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.accounts.permissions import CanView
from core.api import UnknownParamsFilter
from core.api_base import ETagMixin

from . import selectors
from .choices import VerifyTrigger
from .filtersets import AuditEntryFilterSet
from .models import AuditEntry
from .verification import run_verification


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ("id", *selectors.EXPORT_FIELDS)
        read_only_fields = fields


class AuditEntryList(generics.ListAPIView):
    """The audit log, newest first; filter with actor, action, channel, object_type/object_id,
    since/until, q (search)."""

    permission_classes = [CanView]
    serializer_class = AuditEntrySerializer
    queryset = AuditEntry.objects.order_by("-seq")
    filter_backends = [UnknownParamsFilter, DjangoFilterBackend, OrderingFilter]
    filterset_class = AuditEntryFilterSet
    ordering_fields = ["seq", "time"]


class AuditEntryDetail(ETagMixin, generics.RetrieveAPIView):
    """One audit entry."""

    permission_classes = [CanView]
    serializer_class = AuditEntrySerializer
    queryset = AuditEntry.objects.all()


class ChainBreakSerializer(serializers.Serializer):
    seq = serializers.IntegerField(allow_null=True)
    id = serializers.IntegerField(allow_null=True)
    kind = serializers.CharField(
        help_text="missing, link, edited, downgrade, checkpoint, truncated, rewound or head"
    )
    problem = serializers.CharField()


class VerifyResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField(help_text="entries intact before the first break")
    walked = serializers.IntegerField(help_text="entries examined")
    break_count = serializers.IntegerField()
    breaks = ChainBreakSerializer(many=True)
    first_broken = ChainBreakSerializer(allow_null=True)
    head_seq = serializers.IntegerField()
    keyed_from = serializers.IntegerField(allow_null=True)
    checkpoint = serializers.DictField(allow_null=True)


class AuditVerify(APIView):
    """Check the whole chain against its head row and the last checkpoint; `breaks` lists
    every edited, deleted, inserted or truncated entry. The result is kept for the
    overview; writing checkpoints is left to the schedule and `audit_verify`."""

    permission_classes = [CanView]

    @extend_schema(responses=VerifyResultSerializer)
    def get(self, request: Request) -> Response:
        result, _ = run_verification(trigger=VerifyTrigger.API)
        return Response(result)


class _StreamRenderer(BaseRenderer):
    """Lets `?format=csv|jsonl` pass DRF's content negotiation; the view streams itself."""

    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else JSONRenderer().render(data)


class CSVRenderer(_StreamRenderer):
    media_type = "text/csv"
    format = "csv"


class JSONLinesRenderer(_StreamRenderer):
    media_type = "application/jsonl"
    format = "jsonl"


class AuditExport(APIView):
    """Stream the (filtered) log oldest first as CSV or JSON lines, in constant memory."""

    permission_classes = [CanView]
    renderer_classes = [CSVRenderer, JSONLinesRenderer, JSONRenderer]

    @extend_schema(
        parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["csv", "jsonl"])],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/jsonl"): OpenApiTypes.STR,
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse | Response:
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "jsonl"):
            return Response({"format": ["use csv or jsonl"]}, status=400)
        params = request.query_params.copy()
        params.pop("format", None)
        queryset = selectors.audit_entries(params).order_by("seq")
        stream = (
            selectors.export_csv(queryset) if fmt == "csv" else selectors.export_jsonl(queryset)
        )
        content_type = (
            "text/csv; charset=utf-8" if fmt == "csv" else "application/jsonl; charset=utf-8"
        )
        response = StreamingHttpResponse(stream, content_type=content_type)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="rampart-audit-{stamp}.{fmt}"'
        return response
