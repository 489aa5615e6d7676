"""Rule set pages: the list, settings, the rule editor and the compiled preview."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from dashboard.compiled import device_preview
from dashboard.forms.objects import RuleSetForm
from dashboard.permissions import editor, reader
from dashboard.selectors import analysis, rulesets
from dashboard.views.common import PAGE_SIZES, page_size
from rules import services
from rules.choices import Action, Chain
from rules.models import RuleSet
from rules.where_used import unused_for_ruleset


@reader
def ruleset_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/rulesets/list.html",
        {"rulesets": rulesets.ruleset_list(), "nav": "rulesets"},
    )


@editor
def ruleset_form(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    ruleset = get_object_or_404(RuleSet, pk=pk) if pk else None
    form = RuleSetForm(request.POST or None, instance=ruleset)
    if request.method == "POST":
        saved = form.save()
        if saved:
            messages.success(request, f"Rule set {saved.name} saved.")
            return redirect("dashboard:ruleset", pk=saved.pk)
    return render(
        request,
        "dashboard/object_form.html",
        {
            "form": form,
            "object": ruleset,
            "title": f"Rule set {ruleset}" if ruleset else "New rule set",
            "cancel": reverse("dashboard:ruleset", args=[ruleset.pk])
            if ruleset
            else reverse("dashboard:rulesets"),
            "nav": "rulesets",
        },
    )


def _rule_filter(request: HttpRequest) -> rulesets.RuleFilter:
    return rulesets.RuleFilter(
        q=request.GET.get("q", "")[:100],
        chain=request.GET.get("chain", "") if request.GET.get("chain") in Chain.values else "",
        action=request.GET.get("action", "") if request.GET.get("action") in Action.values else "",
        enabled=request.GET.get("enabled", ""),
        hits=request.GET.get("hits", "") if request.GET.get("hits") in ("idle", "never") else "",
    )


@reader
def ruleset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The rule editor: one page of the ordered rule table (the table alone for HTMX)."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    flt = _rule_filter(request)
    paginator = Paginator(rulesets.ruleset_rules(ruleset, flt), page_size(request))
    page = paginator.get_page(request.GET.get("page"))
    rows = rulesets.rule_rows(page.object_list)
    rulesets.attach_hits(rows)
    findings = analysis.ruleset_analysis(ruleset, run=request.GET.get("analyse") == "1")
    analysis.attach_findings(rows, findings)
    context = {
        "ruleset": ruleset,
        "page": page,
        "rows": rows,
        "analysis": findings,
        "filter": flt,
        "chains": Chain.choices,
        "actions": Action.choices,
        "hit_filters": rulesets.HIT_FILTERS,
        "page_sizes": PAGE_SIZES,
        "per": page_size(request),
        "total": ruleset.rules.count(),
        "nav": "rulesets",
        "table_url": request.get_full_path(),
        "rule_base": reverse("dashboard:rule-new", args=[ruleset.pk]).removesuffix("new/"),
    }
    if request.htmx and request.htmx.target == "rules-table":
        return render(request, "dashboard/rulesets/_rules_table.html", context)
    context["users"] = services.object_users(ruleset)
    context["pending_count"] = rulesets.ruleset_pending_count(ruleset)
    context["nat_rules"] = rulesets.ruleset_nat_rules(ruleset)
    return render(request, "dashboard/rulesets/editor.html", context)


@reader
def ruleset_unused(request: HttpRequest, pk: int) -> HttpResponse:
    """The rule set analysis's cleanup list: objects nothing uses (fleet-wide, through
    groups), and this rule set when no device applies it. Loaded when opened."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    slugs = {"address": "addresses", "address group": "address-groups", "service": "services"}
    slugs |= {"service group": "service-groups", "zone": "zones"}
    rows = [(u, slugs.get(u.kind)) for u in unused_for_ruleset(ruleset)]
    return render(request, "dashboard/rulesets/_unused.html", {"ruleset": ruleset, "rows": rows})


@reader
def ruleset_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """What a deploy of this rule set would push, per device, and the diff to what runs now."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    devices = rulesets.ruleset_devices(ruleset)
    chosen = next(
        (d for d in devices if str(d.pk) == request.GET.get("device")),
        devices[0] if devices else None,
    )
    return render(
        request,
        "dashboard/rulesets/preview.html",
        {
            "ruleset": ruleset,
            "devices": devices,
            "device": chosen,
            "preview": device_preview(chosen) if chosen else None,
            "analysis": analysis.ruleset_analysis(ruleset),
            "nav": "rulesets",
        },
    )
