"""Object pages: addresses, services and their groups (list, edit, where used, delete)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dashboard.forms.audit import AuditFieldsForm
from dashboard.forms.objects import OBJECT_FORMS
from dashboard.permissions import editor, reader
from dashboard.selectors.objects import OBJECT_KINDS, with_member_preview
from dashboard.selectors.objects import object_list as objects_of_kind
from dashboard.views.common import form_errors, page_size
from rules import services
from rules.selectors import group_member_rows, member_of_row
from rules.where_used import where_used


def _kind(kind: str) -> tuple[type, str, str]:
    if kind not in OBJECT_KINDS:
        raise Http404("no such object kind")
    return OBJECT_KINDS[kind]


@reader
def object_list(request: HttpRequest, kind: str = "addresses") -> HttpResponse:
    _, title, noun = _kind(kind)
    q = request.GET.get("q", "").strip()
    page = Paginator(objects_of_kind(kind, q), page_size(request)).get_page(request.GET.get("page"))
    if kind in ("address-groups", "service-groups"):
        page.object_list = with_member_preview(page.object_list)
    return render(
        request,
        "dashboard/objects/list.html",
        {
            "kind": kind,
            "title": title,
            "noun": noun,
            "page": page,
            "q": q,
            "kinds": OBJECT_KINDS,
            "nav": "objects",
        },
    )


@reader
def object_where_used(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    """Every user of the object, through groups, with the path to each."""
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
        {"object": obj, "kind": kind, "uses": where_used(obj), "nav": "objects"},
    )


@editor
def object_form(request: HttpRequest, kind: str, pk: int | None = None) -> HttpResponse:
    model, _, noun = _kind(kind)
    obj = get_object_or_404(model, pk=pk) if pk else None
    form = OBJECT_FORMS[kind](request.POST or None, instance=obj)
    uses = where_used(obj) if obj else None
    members = None
    if obj is not None and kind in ("address-groups", "service-groups"):
        members = Paginator(group_member_rows(obj), page_size(request)).get_page(
            request.GET.get("page")
        )
        members.object_list = [member_of_row(row) for row in members.object_list]
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
            "users": uses,
            "members_page": members,
            "uses": uses,
            "cancel": reverse("dashboard:objects", args=[kind]),
            "nav": "objects",
        },
    )


@editor
@require_POST
def object_delete(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    model, _, noun = _kind(kind)
    obj = get_object_or_404(model, pk=pk)
    audit = AuditFieldsForm(request.POST)
    if not audit.is_valid():
        messages.error(request, form_errors(audit))
        return redirect("dashboard:object-edit", kind=kind, pk=pk)
    try:
        services.object_delete(obj)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("dashboard:object-edit", kind=kind, pk=pk)
    messages.success(request, f"{noun.capitalize()} {obj.name} deleted.")
    return redirect("dashboard:objects", kind=kind)
