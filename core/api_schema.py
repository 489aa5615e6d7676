"""The OpenAPI schema class: every operation documents the 4xx answers it can give, with
their bodies, so a generated client can parse an error instead of failing on it.

The codes follow from what the platform does, not from per-view lists: a body can be
refused (400 field errors, 415 not JSON), a signed-out caller gets 401 and a role without
the right 403, a path naming an object 404, a stale If-Match 412 (views with `uses_etags`,
core.api_base), a reused Idempotency-Key 422 or 409 (core.idempotency), an unknown list
parameter 400 (core.api). A view's own `@extend_schema(responses=...)` wins for the codes
it names.

This module imports nothing of core.api_base: DRF imports it (DEFAULT_SCHEMA_CLASS) while
core.api_base's decorators are being applied.
"""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter

BODY_METHODS = ("POST", "PUT", "PATCH")

DETAIL_SCHEMA = {
    "type": "object",
    "description": "An error that is not about one field.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "description": "Field name (or `non_field_errors`, or the query parameter) -> messages. "
    "Nested bodies nest the same way, keyed by field or item index.",
    "additionalProperties": {},
}

IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="The ETag from your last GET: the write is refused (412) if the object changed "
    "since. Without it the write proceeds (the last writer wins).",
)
ETAG_NOTE = (
    "The answer carries the object's `ETag`; `If-None-Match` with it answers 304 while the "
    "object is unchanged."
)
IF_MATCH_NOTE = (
    "Send the ETag back as `If-Match` on PUT, PATCH or DELETE to refuse the write (412) if "
    "someone changed the object in between."
)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema with the platform's error answers added."""

    def _component(self, name: str, schema: dict) -> dict:
        component = ResolvedComponent(
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema
        )
        self.registry.register_on_missing(component)
        return component.ref

    def _error(self, description: str, component: str = "ErrorDetail") -> dict:
        schema = DETAIL_SCHEMA if component == "ErrorDetail" else FIELD_ERRORS_SCHEMA
        return {
            "description": description,
            "content": {"application/json": {"schema": self._component(component, schema)}},
        }

    def _handler(self):
        name = getattr(self.view, "action", None) or self.method.lower()
        return getattr(self.view, name, None)

    def _error_responses(self) -> dict[str, dict]:
        errors: dict[str, dict] = {}
        method = self.method.upper()
        if method in BODY_METHODS:
            errors["400"] = self._error("invalid body: messages by field", "FieldErrors")
            errors["415"] = self._error("the body is not in a media type this operation accepts")
        elif method == "GET" and self._is_list_view():
            errors["400"] = self._error("an unknown or invalid query parameter", "FieldErrors")
        if self.view.get_authenticators():
            errors["401"] = self._error("not signed in (send `Authorization: Token <key>`)")
        errors["403"] = self._error("your roles do not allow this operation")
        if "{" in self.path:
            errors["404"] = self._error("no such object")
        if self._is_etag_write():
            errors["412"] = self._error("If-Match does not name the object's current ETag")
        if getattr(self._handler(), "idempotent", False):
            errors["409"] = self._error("the first request with this Idempotency-Key still runs")
            errors["422"] = self._error("this Idempotency-Key was used for another request")
        return errors

    def _is_etag_write(self) -> bool:
        return self.method.upper() in ("PUT", "PATCH", "DELETE") and getattr(
            self.view, "uses_etags", False
        )

    def get_override_parameters(self) -> list:
        params = super().get_override_parameters()
        return [*params, IF_MATCH] if self._is_etag_write() else params

    def get_description(self) -> str:
        description = super().get_description()
        if not getattr(self.view, "uses_etags", False):
            return description
        writable = hasattr(self.view, "update") or hasattr(self.view, "destroy")
        if self.method.upper() == "GET" and not self._is_list_view():
            note = f"{ETAG_NOTE} {IF_MATCH_NOTE}" if writable else ETAG_NOTE
        elif self._is_etag_write():
            note = IF_MATCH_NOTE
        else:
            return description
        return f"{description}\n\n{note}".strip()

    def _get_response_bodies(self, direction: str = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        for code, response in self._error_responses().items():
            responses.setdefault(code, response)
        return responses
