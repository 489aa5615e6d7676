"""Sets the audit context for each request and returns its id as X-Request-ID.

The reason and ticket of a write come from the X-Rampart-Reason / X-Rampart-Ticket
headers, else from `reason`/`ticket` fields (JSON on the API, form fields in the
dashboard); the API refuses a write without them when the settings require them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .choices import AuditChannel
from .context import AuditContext, reset_context, set_context

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
BODY_SNIFF_LIMIT = 65536  # larger bodies (bulk writes) are parsed only when a reason is required
# API writes that cannot carry a reason: signing in/out, tokens, agents calling home.
DEFAULT_REASON_EXEMPT = ("/api/v1/auth/", "/api/v1/agents/", "/api/v1/enroll")


def channel_for(path: str) -> str:
    if path.startswith("/api/"):
        return AuditChannel.API
    if path.startswith("/admin/"):
        return AuditChannel.ADMIN
    return AuditChannel.UI


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR; X-Forwarded-For only when the peer is a configured trusted proxy."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    trusted = settings.RAMPART.get("AUDIT_TRUSTED_PROXIES", [])
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded and remote in trusted:
        return forwarded.split(",")[-1].strip()[:45]
    return remote[:45]


def _body_fields(request: HttpRequest) -> dict:
    """`reason`/`ticket` given as JSON body fields (headers are preferred)."""
    if not request.content_type or "json" not in request.content_type:
        return {}
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _form_fields(request: HttpRequest, reason: str, ticket: str) -> tuple[str, str]:
    """A dashboard write's `reason`/`ticket` form fields (headers win). The forms refuse
    missing required values themselves, with a field error (dashboard/forms/audit.py)."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return reason, ticket
    return (
        reason or str(request.POST.get("reason") or "").strip(),
        ticket or str(request.POST.get("ticket") or "").strip(),
    )


class AuditContextMiddleware:
    """Place after AuthenticationMiddleware. The user is read from the request when an entry
    is written, so API token users (authenticated later, by DRF) are attributed too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        channel = channel_for(request.path)
        reason = request.headers.get("X-Rampart-Reason", "").strip()
        ticket = request.headers.get("X-Rampart-Ticket", "").strip()
        if channel == AuditChannel.UI and request.method in WRITE_METHODS:
            reason, ticket = _form_fields(request, reason, ticket)
        elif (
            channel == AuditChannel.API
            and request.method in WRITE_METHODS
            and not (reason and ticket)
            and (
                self._required() or int(request.META.get("CONTENT_LENGTH") or 0) <= BODY_SNIFF_LIMIT
            )
        ):
            fields = _body_fields(request)
            reason = reason or str(fields.get("reason") or "").strip()
            ticket = ticket or str(fields.get("ticket") or "").strip()
        refusal = self._missing(request, channel, reason, ticket)
        if refusal:
            response: HttpResponse = JsonResponse({"non_field_errors": [refusal]}, status=400)
        else:
            token = set_context(
                AuditContext(
                    channel=channel,
                    request=request,
                    request_id=request_id,
                    client_ip=client_ip(request),
                    user_agent=request.headers.get("User-Agent", "")[:300],
                    reason=reason,
                    ticket=ticket[:100],
                )
            )
            try:
                response = self.get_response(request)
            finally:
                reset_context(token)
        response["X-Request-ID"] = request_id
        return response

    @staticmethod
    def _required() -> bool:
        return bool(
            settings.RAMPART.get("AUDIT_REQUIRE_REASON")
            or settings.RAMPART.get("AUDIT_REQUIRE_TICKET")
        )

    @staticmethod
    def _missing(request: HttpRequest, channel: str, reason: str, ticket: str) -> str:
        """The refusal message when settings demand a reason/ticket on API writes, else ''."""
        if channel != AuditChannel.API or request.method not in WRITE_METHODS:
            return ""
        conf = settings.RAMPART
        exempt = tuple(conf.get("AUDIT_REASON_EXEMPT", DEFAULT_REASON_EXEMPT))
        if request.path.startswith(exempt):
            return ""
        if conf.get("AUDIT_REQUIRE_REASON") and not reason:
            return "a reason is required: send the X-Rampart-Reason header (and X-Rampart-Ticket)"
        if conf.get("AUDIT_REQUIRE_TICKET") and not ticket:
            return "a ticket reference is required: send the X-Rampart-Ticket header"
        return ""
