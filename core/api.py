"""Shared API plumbing: paging, the check of list query parameters and the error shape every
endpoint returns.

REST_FRAMEWORK's defaults name classes here, and DRF imports them while it defines its own
generic views: this module must not use drf-spectacular's decorators (they read the
schema class setting, which imports DRF's generic views: a cycle).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, QuerySet
from django.forms import MultiWidget
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend
from rest_framework.pagination import LimitOffsetPagination, PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

PAGE_PARAMS = ("page", "page_size")
OFFSET_PARAMS = ("limit", "offset")


class _OffsetPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class Pagination(PageNumberPagination):
    """`page`/`page_size` or `limit`/`offset` (not both): the same answer shape either way.

    Page numbers suit people paging through a table; offsets suit scripts that resume where
    they stopped. `next`/`previous` keep the style the request used.
    """

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def __init__(self) -> None:
        self._offset: _OffsetPagination | None = None

    def paginate_queryset(self, queryset: QuerySet, request: Request, view=None) -> list | None:
        params = request.query_params
        if not any(p in params for p in OFFSET_PARAMS):
            self._offset = None
            return super().paginate_queryset(queryset, request, view)
        if any(p in params for p in PAGE_PARAMS):
            raise ValidationError(
                {"limit": ["use page/page_size or limit/offset, not both in one request"]}
            )
        for name in OFFSET_PARAMS:
            value = params.get(name)
            if value is not None and not value.isdecimal():
                raise ValidationError({name: ["must be a whole number"]})
        self._offset = _OffsetPagination()
        return self._offset.paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data: list) -> Response:
        if self._offset is not None:
            return self._offset.get_paginated_response(data)
        return super().get_paginated_response(data)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        params = super().get_schema_operation_parameters(view)
        params += _OffsetPagination().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] in OFFSET_PARAMS:
                param["description"] += " (instead of page/page_size)"
        return params


def _filterset_params(view, queryset: QuerySet) -> set[str]:
    """The query keys a view's filterset reads (range filters read `<name>_<suffix>`)."""
    filterset_class = DjangoFilterBackend().get_filterset_class(view, queryset)
    if filterset_class is None:
        return set()
    names = set()
    for name, field in filterset_class().form.fields.items():
        widget = field.widget
        if isinstance(widget, MultiWidget):
            suffixes = getattr(widget, "suffixes", None) or range(len(widget.widgets))
            names.update(f"{name}_{s}" if s else name for s in suffixes)
        else:
            names.add(name)
    return names


def known_list_params(view, queryset: QuerySet) -> set[str]:
    """Every query parameter a list view reads: its filters, search, ordering, paging, format,
    and the names a view declares in `extra_query_params`."""
    known = {api_settings.URL_FORMAT_OVERRIDE, *getattr(view, "extra_query_params", ())}
    for backend_class in getattr(view, "filter_backends", ()):
        if issubclass(backend_class, DjangoFilterBackend):
            known |= _filterset_params(view, queryset)
        elif not issubclass(backend_class, UnknownParamsFilter):
            known |= {p["name"] for p in backend_class().get_schema_operation_parameters(view)}
    paginator = getattr(view, "paginator", None)
    if paginator is not None:
        known |= {p["name"] for p in paginator.get_schema_operation_parameters(view)}
    return known


class UnknownParamsFilter(BaseFilterBackend):
    """A list answered with an unknown query parameter is a 400 naming it, never a silently
    unfiltered list (a typo in `?rulset=` must not return every rule).

    Detail views are not checked: their query parameters select nothing.
    """

    def filter_queryset(self, request: Request, queryset: QuerySet, view) -> QuerySet:
        lookup = getattr(view, "lookup_url_kwarg", None) or getattr(view, "lookup_field", None)
        if lookup and lookup in getattr(view, "kwargs", {}):
            return queryset
        unknown = sorted(set(request.query_params) - known_list_params(view, queryset))
        if unknown:
            known = ", ".join(sorted(known_list_params(view, queryset) - {""}))
            raise ValidationError(
                {name: [f"unknown query parameter (known here: {known})"] for name in unknown}
            )
        return queryset


def validation_detail(exc: DjangoValidationError) -> dict | list:
    """A Django ValidationError as DRF's field-keyed error body."""
    if hasattr(exc, "error_dict"):
        return {
            field: [m for e in errors for m in e.messages]
            for field, errors in exc.error_dict.items()
        }
    return {"non_field_errors": exc.messages}


def exception_handler(exc, context):
    """Model/service validation errors become 400s with field messages, never 500s."""
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(detail=validation_detail(exc))
    elif isinstance(exc, ProtectedError):
        users = sorted({str(o) for o in exc.protected_objects})[:20]
        return Response(
            {"non_field_errors": [f"still in use by: {', '.join(users)}"]},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)
