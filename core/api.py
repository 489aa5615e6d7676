"""Shared API plumbing: pagination and the error shape every endpoint returns."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Pagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


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
