"""Revision pages: history, pending approvals, one revision's diff, rollback and review."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.forms.device_changes import DeviceChangeReviewForm
from dashboard.forms.revisions import ReviewForm, RollbackForm
from dashboard.permissions import approver, editor, reader
from dashboard.selectors import revisions
from dashboard.views.common import form_errors, page_size
from rules.models import RuleSet, RuleSetRevision
from rules.revisions import revision_diff


@reader
def revision_list(request: HttpRequest, pending: bool = False) -> HttpResponse:
    ruleset = None
    if request.GET.get("ruleset", "").isdecimal():
        ruleset = get_object_or_404(RuleSet, pk=int(request.GET["ruleset"]))
    page = Paginator(
        revisions.revision_list(ruleset=ruleset, pending=pending), page_size(request)
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "dashboard/revisions/list.html",
        {
            "page": page,
            "ruleset": ruleset,
            "pending": pending,
            "device_changes": revisions.device_changes_pending() if pending else [],
            "review_form": DeviceChangeReviewForm(),
            "nav": "approvals" if pending else "revisions",
        },
    )


@reader
def revision_detail(request: HttpRequest, pk: int) -> HttpResponse:
    revision = get_object_or_404(revisions.revision_detail(), pk=pk)
    base = revision.parent
    against = request.GET.get("against", "")
    if against.isdecimal():
        base = get_object_or_404(revisions.revision_of(revision.ruleset), pk=int(against))
    return render(
        request,
        "dashboard/revisions/detail.html",
        {
            "revision": revision,
            "base": base,
            "diff": revision_diff(base, revision) if base else None,
            "latest": revisions.revision_latest(revision.ruleset),
            "others": revisions.revision_others(revision.ruleset),
            "rollback_form": RollbackForm(),
            "review_form": ReviewForm(),
            "nav": "revisions",
        },
    )


@editor
@require_POST
def revision_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    revision = get_object_or_404(RuleSetRevision, pk=pk)
    form = RollbackForm(request.POST)
    new = form.save(revision, request.user)
    if new is None:
        messages.error(request, "Rollback refused: " + form_errors(form))
        return redirect("dashboard:revision", pk=pk)
    conflicts = getattr(new, "conflicts", [])
    messages.success(
        request,
        f"{revision.ruleset} rolled back to the content of r{revision.number} (now r{new.number})"
        + (f"; note: {'; '.join(conflicts)}" if conflicts else "."),
    )
    return redirect("dashboard:revision", pk=new.pk)


@approver
@require_POST
def revision_review(request: HttpRequest, pk: int) -> HttpResponse:
    revision = get_object_or_404(RuleSetRevision, pk=pk)
    form = ReviewForm(request.POST)
    done = form.save(revision, request.user)
    if done is None:
        messages.error(request, "Review refused: " + form_errors(form))
    else:
        messages.success(request, f"{done.ruleset} r{done.number} {done.status}.")
    return redirect("dashboard:revision", pk=pk)
