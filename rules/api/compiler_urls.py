"""Compiler routes under /api/v1/ for policy (not devices): rule set analysis, validate.

A device's bundle, trace and analysis: agents/api/compiled_urls.py."""

from django.urls import path

from . import compiler_views as views

urlpatterns = [
    path(
        "rulesets/<int:pk>/analysis/", views.RuleSetAnalysisView.as_view(), name="ruleset-analysis"
    ),
    path("validate/", views.ValidateView.as_view(), name="validate"),
]
