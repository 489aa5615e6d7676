"""Dashboard views: parse the request, call one form/service/selector, render.

HTMX requests get the partial they swap in; plain requests get the whole page, so every
page also works (slower) without JavaScript. Writes answer HTMX with 204 + HX-Trigger
events (`rules-changed`, `toast`) that the page listens for.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dashboard import forms, selectors
from dashboard.permissions import approver as approver_role
from dashboard.permissions import deployer, editor, reader
from rules import services
from rules.choices import Action, Chain
from rules.models import Device, Rule, RuleSet

PAGE_SIZES = (50, 100, 250, 500)


def hx_done(message: str, *events: str, status: int = 204) -> HttpResponse:
    """An HTMX answer with no body that fires events (and a toast) on the page."""
    triggers: dict = {name: True for name in events}
    triggers["toast"] = {"message": message, "level": "danger" if status >= 400 else "success"}
    return HttpResponse(status=status, headers={"HX-Trigger": json.dumps(triggers)})


def _page_size(request: HttpRequest) -> int:
    try:
        size = int(request.GET.get("per", 100))
    except ValueError:
        return 100
    return size if size in PAGE_SIZES else 100


# --- overview and devices -----------------------------------------------------------------


def _idle_days(request: HttpRequest) -> int:
    try:
        return max(1, min(int(request.GET.get("days", 30)), 365))
    except ValueError:
        return 30


@reader
def overview(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/overview.html",
        {
            "devices": selectors.device_counts(),
            "deployments": selectors.deployment_counts(),
            "recent_deployments": selectors.deployment_list()[:8],
            "idle_days": _idle_days(request),
            "problem_devices": selectors.device_list().exclude(status="online", drifted=False)[:10],
            "expiring": selectors.rules_expiring(),
            "expiry_days": selectors.EXPIRY_WINDOW.days,
            "nav": "overview",
        },
    )


@reader
def overview_idle(request: HttpRequest) -> HttpResponse:
    """Rules without hits: loaded after the overview (it reads every rule's counters)."""
    days = _idle_days(request)
    idle_count, idle = selectors.rules_without_hits(days)
    return render(
        request,
        "dashboard/_overview_idle.html",
        {
            "idle_days": days,
            "idle_count": idle_count,
            "idle": idle,
            "day_choices": (7, 30, 90, 180),
        },
    )


@reader
def device_list(request: HttpRequest) -> HttpResponse:
    devices = selectors.device_list()
    status = request.GET.get("status", "")
    if status == "drifted":
        devices = devices.filter(drifted=True)
    elif status:
        devices = devices.filter(status=status)
    q = request.GET.get("q", "").strip()
    if q:
        devices = devices.filter(name__icontains=q) | devices.filter(address__contains=q)
    page = Paginator(devices, _page_size(request)).get_page(request.GET.get("page"))
    return render(
        request,
        "dashboard/devices/list.html",
        {"page": page, "status": status, "q": q, "nav": "devices"},
    )


@reader
def device_detail(request: HttpRequest, pk: int) -> HttpResponse:
    device = get_object_or_404(selectors.device_list(), pk=pk)
    return render(
        request,
        "dashboard/devices/detail.html",
        {
            "device": device,
            "facts": sorted((device.facts or {}).items()),
            "counters": selectors.device_counters(device),
            "recent": selectors.device_deployments(device),
            "nav": "devices",
        },
    )


# --- rule sets and the rule editor ----------------------------------------------------------


@reader
def ruleset_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/rulesets/list.html",
        {"rulesets": selectors.ruleset_list(), "nav": "rulesets"},
    )


@editor
def ruleset_form(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    ruleset = get_object_or_404(RuleSet, pk=pk) if pk else None
    form = forms.RuleSetForm(request.POST or None, instance=ruleset)
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


def _rule_filter(request: HttpRequest) -> selectors.RuleFilter:
    return selectors.RuleFilter(
        q=request.GET.get("q", "")[:100],
        chain=request.GET.get("chain", "") if request.GET.get("chain") in Chain.values else "",
        action=request.GET.get("action", "") if request.GET.get("action") in Action.values else "",
        enabled=request.GET.get("enabled", ""),
    )


@reader
def ruleset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The rule editor: one page of the ordered rule table (the table alone for HTMX)."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    flt = _rule_filter(request)
    paginator = Paginator(selectors.ruleset_rules(ruleset, flt), _page_size(request))
    page = paginator.get_page(request.GET.get("page"))
    rows = selectors.rule_rows(page.object_list)
    analysis = selectors.ruleset_analysis(ruleset, run=request.GET.get("analyse") == "1")
    selectors.attach_findings(rows, analysis)
    context = {
        "ruleset": ruleset,
        "page": page,
        "rows": rows,
        "analysis": analysis,
        "filter": flt,
        "chains": Chain.choices,
        "actions": Action.choices,
        "page_sizes": PAGE_SIZES,
        "per": _page_size(request),
        "total": ruleset.rules.count(),
        "nav": "rulesets",
        "table_url": request.get_full_path(),
        "rule_base": reverse("dashboard:rule-new", args=[ruleset.pk]).removesuffix("new/"),
    }
    if request.htmx and request.htmx.target == "rules-table":
        return render(request, "dashboard/rulesets/_rules_table.html", context)
    context["users"] = services.object_users(ruleset)
    context["pending_count"] = ruleset.revisions.filter(status="pending").count()
    return render(request, "dashboard/rulesets/editor.html", context)


def _rule_refs(rule: Rule) -> dict[str, list[str]]:
    row = selectors.rule_rows([rule])[0]
    return {"sources": row.sources, "destinations": row.destinations, "services": row.services}


def _rule_form_response(
    request, ruleset: RuleSet, form: forms.RuleForm, rule: Rule | None
) -> HttpResponse:
    context = {"ruleset": ruleset, "form": form, "rule": rule, "nav": "rulesets"}
    template = (
        "dashboard/rulesets/_rule_form.html"
        if request.htmx
        else "dashboard/rulesets/rule_page.html"
    )
    return render(request, template, context)


@editor
def rule_form(request: HttpRequest, pk: int, rule_pk: int | None = None) -> HttpResponse:
    """Add or edit one rule (rendered into the editor panel by HTMX)."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    rule = get_object_or_404(Rule, pk=rule_pk, ruleset=ruleset) if rule_pk else None
    if request.method != "POST":
        initial = forms.RuleForm.initial_for(rule, _rule_refs(rule)) if rule else None
        return _rule_form_response(request, ruleset, forms.RuleForm(initial=initial), rule)
    form = forms.RuleForm(request.POST)
    saved = form.save(ruleset, rule)
    if saved is None:
        return _rule_form_response(request, ruleset, form, rule)
    message = f"Rule #{saved.position} {'saved' if rule else 'added'}."
    if request.htmx:
        response = render(request, "dashboard/rulesets/_editor_closed.html", {})
        response["HX-Trigger"] = json.dumps(
            {"rules-changed": True, "toast": {"message": message, "level": "success"}}
        )
        return response
    messages.success(request, message)
    return redirect("dashboard:ruleset", pk=ruleset.pk)


@editor
@require_POST
def rule_validate(request: HttpRequest, pk: int, rule_pk: int | None = None) -> HttpResponse:
    """Inline validation while typing: the service's checks, nothing saved."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    rule = get_object_or_404(Rule, pk=rule_pk, ruleset=ruleset) if rule_pk else None
    form = forms.RuleForm(request.POST)
    form.validate_only(ruleset, rule)
    return render(request, "dashboard/rulesets/_rule_errors.html", {"form": form})


@editor
@require_POST
def rule_delete(request: HttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    rule = get_object_or_404(Rule, pk=rule_pk, ruleset_id=pk)
    position = rule.position
    services.rule_delete(rule=rule)
    if request.htmx:
        return hx_done(f"Rule #{position} deleted.", "rules-changed")
    messages.success(request, f"Rule #{position} deleted.")
    return redirect("dashboard:ruleset", pk=pk)


@editor
@require_POST
def rule_place(request: HttpRequest, pk: int) -> HttpResponse:
    """Drag-and-drop or Alt+arrow: move one rule next to a neighbour."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    form = forms.PlaceForm(request.POST)
    position = form.save(ruleset)
    if position is None:
        return hx_done(
            "Move refused: " + "; ".join(m for ms in form.errors.values() for m in ms),
            "rules-changed",
            status=409,
        )
    return hx_done(f"Rule moved to #{position}.", "rules-changed")


@editor
@require_POST
def rules_bulk(request: HttpRequest, pk: int) -> HttpResponse:
    ruleset = get_object_or_404(RuleSet, pk=pk)
    form = forms.BulkForm(request.POST)
    count = form.save(ruleset)
    if count is None:
        text = "; ".join(m for ms in form.errors.values() for m in ms)
        if request.htmx:
            return hx_done(text, status=400)
        messages.error(request, text)
    else:
        text = (
            f"{form.cleaned_data['action'].capitalize()}: {count} rule{'s' if count != 1 else ''}."
        )
        if request.htmx:
            return hx_done(text, "rules-changed")
        messages.success(request, text)
    return redirect("dashboard:ruleset", pk=pk)


# --- objects ----------------------------------------------------------------------------


def _kind(kind: str):
    if kind not in selectors.OBJECT_KINDS:
        raise Http404("no such object kind")
    return selectors.OBJECT_KINDS[kind]


@reader
def object_list(request: HttpRequest, kind: str = "addresses") -> HttpResponse:
    model, title, noun = _kind(kind)
    q = request.GET.get("q", "").strip()
    page = Paginator(selectors.object_list(kind, q), _page_size(request)).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "dashboard/objects/list.html",
        {
            "kind": kind,
            "title": title,
            "noun": noun,
            "page": page,
            "q": q,
            "kinds": selectors.OBJECT_KINDS,
            "nav": "objects",
        },
    )


@reader
def object_where_used(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    model, _, _ = _kind(kind)
    obj = get_object_or_404(model, pk=pk)
    template = (
        "dashboard/objects/_where_used.html"
        if request.htmx
        else "dashboard/objects/where_used.html"
    )
    return render(
        request,
        template,
        {"object": obj, "kind": kind, "users": services.object_users(obj), "nav": "objects"},
    )


@editor
def object_form(request: HttpRequest, kind: str, pk: int | None = None) -> HttpResponse:
    model, title, noun = _kind(kind)
    obj = get_object_or_404(model, pk=pk) if pk else None
    form = forms.OBJECT_FORMS[kind](request.POST or None, instance=obj)
    if request.method == "POST":
        saved = form.save()
        if saved:
            messages.success(request, f"{noun.capitalize()} {saved.name} saved.")
            return redirect(reverse("dashboard:objects", args=[kind]) + f"?q={saved.name}")
    return render(
        request,
        "dashboard/object_form.html",
        {
            "form": form,
            "object": obj,
            "kind": kind,
            "title": f"{noun.capitalize()} {obj}" if obj else f"New {noun}",
            "users": services.object_users(obj) if obj else None,
            "cancel": reverse("dashboard:objects", args=[kind]),
            "nav": "objects",
        },
    )


@editor
@require_POST
def object_delete(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    model, _, noun = _kind(kind)
    obj = get_object_or_404(model, pk=pk)
    try:
        services.object_delete(obj)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("dashboard:object-edit", kind=kind, pk=pk)
    messages.success(request, f"{noun.capitalize()} {obj.name} deleted.")
    return redirect("dashboard:objects", kind=kind)


@reader
def device_redirect(request: HttpRequest, name: str) -> HttpResponse:
    """`/devices/by-name/<name>/`: stable links from the audit log and the API."""
    device = get_object_or_404(Device, name=name)
    return redirect("dashboard:device", pk=device.pk)


# --- deployments -----------------------------------------------------------------------------


@deployer
@require_POST
def deploy(request: HttpRequest) -> HttpResponse:
    """Start a deployment (device button, rule set preview, deployments page)."""
    form = forms.DeployForm(request.POST)
    deployment = form.save(request.user)
    if deployment is None:
        text = "Deploy refused: " + "; ".join(m for ms in form.errors.values() for m in ms)
        if request.htmx:
            return hx_done(text, status=400)
        messages.error(request, text)
        back = request.POST.get("next", "")
        safe = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()})
        return redirect(back if back and safe else "dashboard:deployments")
    if request.htmx and request.POST.get("inline"):
        return _deployment_progress(request, deployment.pk)
    messages.success(request, f"Deployment #{deployment.pk} started.")
    if request.htmx:
        return HttpResponse(
            headers={"HX-Redirect": reverse("dashboard:deployment", args=[deployment.pk])}
        )
    return redirect("dashboard:deployment", pk=deployment.pk)


@reader
def deployment_list(request: HttpRequest) -> HttpResponse:
    from agents.choices import DeploymentStatus

    status = request.GET.get("status", "")
    page = Paginator(selectors.deployment_list(status), _page_size(request)).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "dashboard/deployments/list.html",
        {
            "page": page,
            "status": status,
            "statuses": DeploymentStatus.choices,
            "form": forms.DeployForm(),
            "rulesets": RuleSet.objects.order_by("name").values_list("pk", "name"),
            "nav": "deployments",
        },
    )


def _deployment_progress(request: HttpRequest, pk: int) -> HttpResponse:
    from agents.models import Deployment

    deployment = get_object_or_404(Deployment.objects.select_related("created_by"), pk=pk)
    active = deployment.status in selectors.DEPLOYMENT_ACTIVE
    response = render(
        request,
        "dashboard/deployments/_progress.html",
        {
            "deployment": deployment,
            "waves": selectors.deployment_waves(deployment),
            "active": active,
        },
    )
    if not active:  # the last poll: pages showing device state refresh themselves
        response["HX-Trigger"] = "deployment-finished"
    return response


@reader
def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Per-wave and per-device progress; the progress block polls itself while running."""
    if request.htmx and request.htmx.target == f"deployment-{pk}":
        return _deployment_progress(request, pk)
    from agents.models import Deployment

    deployment = get_object_or_404(Deployment.objects.select_related("created_by"), pk=pk)
    return render(
        request,
        "dashboard/deployments/detail.html",
        {
            "deployment": deployment,
            "waves": selectors.deployment_waves(deployment),
            "active": deployment.status in selectors.DEPLOYMENT_ACTIVE,
            "nav": "deployments",
        },
    )


# --- audit log ---------------------------------------------------------------------------------

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


def _audit_filters(request: HttpRequest):
    params = request.GET.copy()
    for key in list(params):
        if key not in AUDIT_FILTER_KEYS or not any(params.getlist(key)):
            params.pop(key)
    return params


@reader
def audit_list(request: HttpRequest) -> HttpResponse:
    from core.audit.choices import AuditAction, AuditChannel
    from core.audit.selectors import audit_entries

    filters = _audit_filters(request)
    errors: dict = {}
    try:
        entries = audit_entries(filters)
    except ValidationError as exc:
        errors = exc.message_dict
        entries = audit_entries()
    page = Paginator(entries, _page_size(request)).get_page(request.GET.get("page"))
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
    from django.http import StreamingHttpResponse

    from core.audit.selectors import audit_entries, export_csv, export_jsonl

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


# --- revisions and approvals ---------------------------------------------------------------------


@reader
def revision_list(request: HttpRequest, pending: bool = False) -> HttpResponse:
    from rules.models import RevisionStatus, RuleSetRevision

    revisions = (
        RuleSetRevision.objects.select_related("ruleset")
        .defer("snapshot")
        .order_by("-created", "-id")
    )
    ruleset = None
    if request.GET.get("ruleset", "").isdigit():
        ruleset = get_object_or_404(RuleSet, pk=int(request.GET["ruleset"]))
        revisions = revisions.filter(ruleset=ruleset)
    if pending:
        revisions = revisions.filter(status=RevisionStatus.PENDING)
    page = Paginator(revisions, _page_size(request)).get_page(request.GET.get("page"))
    return render(
        request,
        "dashboard/revisions/list.html",
        {
            "page": page,
            "ruleset": ruleset,
            "pending": pending,
            "nav": "approvals" if pending else "revisions",
        },
    )


@reader
def revision_detail(request: HttpRequest, pk: int) -> HttpResponse:
    from rules.models import RuleSetRevision
    from rules.revisions import revision_diff

    revision = get_object_or_404(RuleSetRevision.objects.select_related("ruleset", "parent"), pk=pk)
    base = revision.parent
    against = request.GET.get("against", "")
    if against.isdigit():
        base = get_object_or_404(RuleSetRevision, pk=int(against), ruleset=revision.ruleset)
    latest = revision.ruleset.revisions.order_by("-number").first()
    return render(
        request,
        "dashboard/revisions/detail.html",
        {
            "revision": revision,
            "base": base,
            "diff": revision_diff(base, revision) if base else None,
            "latest": latest,
            "others": revision.ruleset.revisions.defer("snapshot").order_by("-number")[:50],
            "rollback_form": forms.RollbackForm(),
            "review_form": forms.ReviewForm(),
            "nav": "revisions",
        },
    )


@editor
@require_POST
def revision_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    from rules.models import RuleSetRevision

    revision = get_object_or_404(RuleSetRevision, pk=pk)
    form = forms.RollbackForm(request.POST)
    new = form.save(revision, request.user)
    if new is None:
        messages.error(
            request, "Rollback refused: " + "; ".join(m for ms in form.errors.values() for m in ms)
        )
        return redirect("dashboard:revision", pk=pk)
    conflicts = getattr(new, "conflicts", [])
    messages.success(
        request,
        f"{revision.ruleset} rolled back to the content of r{revision.number} (now r{new.number})"
        + (f"; note: {'; '.join(conflicts)}" if conflicts else "."),
    )
    return redirect("dashboard:revision", pk=new.pk)


@approver_role
@require_POST
def revision_review(request: HttpRequest, pk: int) -> HttpResponse:
    from rules.models import RuleSetRevision

    revision = get_object_or_404(RuleSetRevision, pk=pk)
    form = forms.ReviewForm(request.POST)
    done = form.save(revision, request.user)
    if done is None:
        messages.error(
            request, "Review refused: " + "; ".join(m for ms in form.errors.values() for m in ms)
        )
    else:
        messages.success(request, f"{done.ruleset} r{done.number} {done.status}.")
    return redirect("dashboard:revision", pk=pk)


# --- compiled preview and tracer ------------------------------------------------------------------


@reader
def ruleset_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """What a deploy of this rule set would push, per device, and the diff to what runs now."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    devices = selectors.ruleset_devices(ruleset)
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
            "preview": selectors.device_preview(chosen) if chosen else None,
            "analysis": selectors.ruleset_analysis(ruleset),
            "nav": "rulesets",
        },
    )


@reader
def tracer(request: HttpRequest) -> HttpResponse:
    """Which rule decides a packet on a device (the compiler's tracer over the compiled chains)."""
    form = forms.TraceForm(request.GET or None)
    result = form.trace() if request.GET else None
    ruleset_pk = (
        RuleSet.objects.filter(name=result.ruleset).values_list("pk", flat=True).first()
        if result is not None and result.ruleset
        else None
    )
    return render(
        request,
        "dashboard/tracer.html",
        {"form": form, "result": result, "ruleset_pk": ruleset_pk, "nav": "tracer"},
    )
