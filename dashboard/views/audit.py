"""The audit log page and its CSV / JSON-lines export (core.audit's selectors)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import render

from core.audit.choices import AuditAction, AuditChannel
from core.audit.selectors import audit_entries, export_csv, export_jsonl
from dashboard.permissions import reader
from dashboard.views.common import page_size

AUDIT_FILTER_KEYS = (
    "q",
    "actor",
    "action",
    "channel",
    "object_type",
    "object_id",
    "since",
    "until",
    "ticket",
    "request_id",
)


def _audit_filters(request: HttpRequest) -> QueryDict:
    params = request.GET.copy()
    for key in list(params):
        if key not in AUDIT_FILTER_KEYS or not any(params.getlist(key)):
            params.pop(key)
    return params


@reader
def audit_list(request: HttpRequest) -> HttpResponse:
    filters = _audit_filters(request)
    errors: dict = {}
    try:
        entries = audit_entries(filters)
    except ValidationError as exc:
        errors = exc.message_dict
        entries = audit_entries()
    page = Paginator(entries, page_size(request)).get_page(request.GET.get("page"))
    return render(
        request,
        "dashboard/audit/list.html",
        {
            "page": page,
            "filters": filters,
            "errors": errors,
            "actions": AuditAction.choices,
            "channels": AuditChannel.choices,
            "chosen_actions": filters.getlist("action"),
            "chosen_channels": filters.getlist("channel"),
            "export_query": filters.urlencode(),
            "nav": "audit",
        },
    )


@reader
def audit_export(request: HttpRequest) -> HttpResponse:
    """The filtered log as CSV or JSON lines, streamed (the audit selectors' exporters)."""
    fmt = request.GET.get("format", "csv")
    if fmt not in ("csv", "jsonl"):
        return HttpResponse("format must be csv or jsonl", status=400, content_type="text/plain")
    try:
        entries = audit_entries(_audit_filters(request))
    except ValidationError as exc:
        return HttpResponse("; ".join(exc.messages), status=400, content_type="text/plain")
    body = export_csv(entries) if fmt == "csv" else export_jsonl(entries)
    response = StreamingHttpResponse(
        body, content_type="text/csv" if fmt == "csv" else "application/x-ndjson"
    )
    response["Content-Disposition"] = f'attachment; filename="rampart-audit.{fmt}"'
    return response
