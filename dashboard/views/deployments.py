"""Deployment pages: start one, the list, the per-wave progress that polls itself, and the
resume and cancel buttons of a rollout."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from agents.choices import DEPLOYMENT_CANCELLABLE, DeploymentStatus
from agents.models import Deployment
from dashboard.forms.deployments import DeployForm, RolloutCancelForm, RolloutResumeForm
from dashboard.permissions import deployer, reader
from dashboard.selectors import deployments, pushed
from dashboard.selectors.rulesets import ruleset_choices
from dashboard.views.common import form_errors, hx_done, page_size


@deployer
@require_POST
def deploy(request: HttpRequest) -> HttpResponse:
    """Start a deployment (device button, rule set preview, deployments page)."""
    form = DeployForm(request.POST)
    deployment = form.save(request.user)
    if deployment is None:
        text = "Deploy refused: " + form_errors(form)
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
    status = request.GET.get("status", "")
    page = Paginator(deployments.deployment_list(status), page_size(request)).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "dashboard/deployments/list.html",
        {
            "page": page,
            "status": status,
            "statuses": DeploymentStatus.choices,
            "form": DeployForm(),
            "rulesets": ruleset_choices(),
            "nav": "deployments",
        },
    )


def _progress_context(deployment: Deployment) -> dict:
    """What the progress block shows, with the controls the deployment's state allows
    (the template shows them only to users who may deploy)."""
    return {
        "deployment": deployment,
        "waves": deployments.deployment_waves(deployment),
        "active": deployments.deployment_active(deployment),
        "can_resume": deployment.status == DeploymentStatus.HALTED,
        "can_cancel": deployment.status in DEPLOYMENT_CANCELLABLE,
    }


def _deployment_progress(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = get_object_or_404(deployments.deployment_detail(), pk=pk)
    context = _progress_context(deployment)
    response = render(request, "dashboard/deployments/_progress.html", context)
    if not context["active"]:  # the last poll: pages showing device state refresh themselves
        response["HX-Trigger"] = "deployment-finished"
    return response


@reader
def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Per-wave and per-device progress; the progress block polls itself while running."""
    if request.htmx and request.htmx.target == f"deployment-{pk}":
        return _deployment_progress(request, pk)
    deployment = get_object_or_404(deployments.deployment_detail(), pk=pk)
    return render(
        request,
        "dashboard/deployments/detail.html",
        {
            **_progress_context(deployment),
            "pushed": pushed.deployment_pushed(deployment),
            "nav": "deployments",
        },
    )


@deployer
@require_POST
def deployment_resume(request: HttpRequest, pk: int) -> HttpResponse:
    """The Resume button: the rollout goes on after the wave that halted it."""
    return _rollout_control(request, pk, RolloutResumeForm(request.POST), "resumed")


@deployer
@require_POST
def deployment_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """The Cancel button: devices still waiting are skipped, pushes on the wire finish."""
    return _rollout_control(request, pk, RolloutCancelForm(request.POST), "cancelled")


def _rollout_control(
    request: HttpRequest, pk: int, form: RolloutResumeForm | RolloutCancelForm, done: str
) -> HttpResponse:
    deployment = get_object_or_404(deployments.deployment_detail(), pk=pk)
    if form.save(deployment_id=deployment.pk, user=request.user) is None:
        messages.error(request, f"Deployment #{pk} not {done}: " + form_errors(form))
    else:
        messages.success(request, f"Deployment #{pk} {done}.")
    return redirect("dashboard:deployment", pk=pk)
