"""The packet tracer page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard.forms.tracer import TraceForm
from dashboard.permissions import reader
from dashboard.selectors.rulesets import ruleset_pk_by_name


@reader
def tracer(request: HttpRequest) -> HttpResponse:
    """Which rule decides a packet on a device (the compiler's tracer over the compiled chains)."""
    form = TraceForm(request.GET or None)
    result = form.trace() if request.GET else None
    decided_by = getattr(result, "ruleset", None)  # a zone's traces (a dict) link no rule set
    ruleset_pk = ruleset_pk_by_name(decided_by) if decided_by else None
    return render(
        request,
        "dashboard/tracer.html",
        {"form": form, "result": result, "ruleset_pk": ruleset_pk, "nav": "tracer"},
    )
