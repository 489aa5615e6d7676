"""The `idempotent` decorator for API view methods that start work (POST)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from . import services

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Any unique string (e.g. a UUID). Repeating the request with the same key "
    "within 24 h returns the first (successful) answer and starts nothing new; the same key "
    "with a different request is a 422; while the first is still running, a 409.",
)


class KeyReusedError(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"


class KeyInProgressError(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_in_progress"


def _plain(data: object) -> object:
    """The answer as plain JSON types (DRF's ErrorDetail, dates...), as it was rendered."""
    return json.loads(JSONRenderer().render(data) or b"null")


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Honour `Idempotency-Key` on a view method; without the header it runs as before."""

    @functools.wraps(handler)
    def wrapper(view, request: Request, *args, **kwargs) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ValidationError({HEADER: [f"must be 1 to {MAX_KEY_LENGTH} printable characters"]})
        digest = services.request_hash(
            method=request.method,
            path=request.path,
            query=list(request.query_params.lists()),
            body=request.body,
        )
        try:
            record, new = services.key_claim(
                user=request.user, key=key, method=request.method, path=request.path, digest=digest
            )
        except services.KeyReused:
            raise KeyReusedError(
                f"{HEADER} {key!r} was already used for a different request (method, path, "
                "query or body); use a new key for a new request."
            ) from None
        except services.KeyInProgress:
            raise KeyInProgressError(
                f"the first request with {HEADER} {key!r} is still running; retry later."
            ) from None
        if not new:
            return Response(
                record.response_body, status=record.status, headers={"Idempotent-Replayed": "true"}
            )
        try:
            response = handler(view, request, *args, **kwargs)
        except BaseException:
            services.key_release(record=record)
            raise
        if 200 <= response.status_code < 300:
            services.key_complete(
                record=record, status=response.status_code, body=_plain(response.data)
            )
        else:
            services.key_release(record=record)
        return response

    wrapper.idempotent = True  # read by core.api_schema to document 409/422
    return extend_schema(parameters=[IDEMPOTENCY_KEY_PARAMETER])(wrapper)
