"""Helpers every dashboard view family shares: HTMX answers, page sizes, form errors."""

from __future__ import annotations

import json

from django import forms
from django.http import HttpRequest, HttpResponse

PAGE_SIZES = (50, 100, 250, 500)


def hx_done(message: str, *events: str, status: int = 204) -> HttpResponse:
    """An HTMX answer with no body that fires events (and a toast) on the page."""
    triggers: dict = {name: True for name in events}
    triggers["toast"] = {"message": message, "level": "danger" if status >= 400 else "success"}
    return HttpResponse(status=status, headers={"HX-Trigger": json.dumps(triggers)})


def hx_trigger(response: HttpResponse, message: str, *events: str) -> HttpResponse:
    """`response` with events and a success toast fired on the page."""
    triggers: dict = {name: True for name in events}
    triggers["toast"] = {"message": message, "level": "success"}
    response["HX-Trigger"] = json.dumps(triggers)
    return response


def page_size(request: HttpRequest) -> int:
    """`?per=`, one of PAGE_SIZES (100 otherwise)."""
    try:
        size = int(request.GET.get("per", 100))
    except ValueError:
        return 100
    return size if size in PAGE_SIZES else 100


def form_errors(form: forms.Form) -> str:
    """Every error of a form as one line (for a toast or a flash message)."""
    return "; ".join(m for ms in form.errors.values() for m in ms)
