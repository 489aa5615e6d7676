"""The rule editor's writes: add/edit one rule, validate and analyse while typing, delete,
move, bulk."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agents.draft_analysis import analyse_draft
from dashboard.forms.audit import AuditFieldsForm
from dashboard.forms.rule_editor import BulkForm, PlaceForm, RuleForm
from dashboard.permissions import editor
from dashboard.selectors.rulesets import rule_refs
from dashboard.views.common import form_errors, hx_done, hx_trigger
from rules import services
from rules.models import Rule, RuleSet


def _rule_form_response(
    request: HttpRequest, ruleset: RuleSet, form: RuleForm, rule: Rule | None
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
        initial = RuleForm.initial_for(rule, rule_refs(rule)) if rule else None
        return _rule_form_response(request, ruleset, RuleForm(initial=initial), rule)
    form = RuleForm(request.POST)
    saved = form.save(ruleset, rule)
    if saved is None:
        return _rule_form_response(request, ruleset, form, rule)
    message = f"Rule #{saved.position} {'saved' if rule else 'added'}."
    if request.htmx:
        response = render(request, "dashboard/rulesets/_editor_closed.html", {})
        return hx_trigger(response, message, "rules-changed")
    messages.success(request, message)
    return redirect("dashboard:ruleset", pk=ruleset.pk)


@editor
@require_POST
def rule_validate(request: HttpRequest, pk: int, rule_pk: int | None = None) -> HttpResponse:
    """Inline validation while typing: the service's checks, nothing saved."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    rule = get_object_or_404(Rule, pk=rule_pk, ruleset=ruleset) if rule_pk else None
    form = RuleForm(request.POST, audit=False)  # nothing is written: no reason asked yet
    form.validate_only(ruleset, rule)
    return render(request, "dashboard/rulesets/_rule_errors.html", {"form": form})


@editor
@require_POST
def rule_analyse(request: HttpRequest, pk: int, rule_pk: int | None = None) -> HttpResponse:
    """Live analysis while typing: the draft's findings (agents.draft_analysis), nothing
    saved; a rule not valid yet shows no findings (the validator names its fields)."""
    ruleset = get_object_or_404(RuleSet, pk=pk)
    rule = get_object_or_404(Rule, pk=rule_pk, ruleset=ruleset) if rule_pk else None
    form = RuleForm(request.POST, audit=False)
    result = None
    if form.is_valid():
        try:
            result = analyse_draft(
                ruleset, form.rule_data(), editing=rule, position=form.cleaned_data.get("position")
            )
        except ValidationError:
            result = None
    context = {"draft": result, "ruleset": ruleset}
    return render(request, "dashboard/rulesets/_draft_findings.html", context)


@editor
@require_POST
def rule_delete(request: HttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    rule = get_object_or_404(Rule, pk=rule_pk, ruleset_id=pk)
    position = rule.position
    audit = AuditFieldsForm(request.POST)
    if not audit.is_valid():
        if request.htmx:
            return hx_done(form_errors(audit), status=400)
        messages.error(request, form_errors(audit))
        return redirect("dashboard:ruleset", pk=pk)
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
    form = PlaceForm(request.POST)
    position = form.save(ruleset)
    if position is None:
        return hx_done("Move refused: " + form_errors(form), "rules-changed", status=409)
    return hx_done(f"Rule moved to #{position}.", "rules-changed")


@editor
@require_POST
def rules_bulk(request: HttpRequest, pk: int) -> HttpResponse:
    ruleset = get_object_or_404(RuleSet, pk=pk)
    form = BulkForm(request.POST)
    count = form.save(ruleset)
    if count is None:
        text = form_errors(form)
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
