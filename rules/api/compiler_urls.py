"""Compiler routes under /api/v1/: bundle, trace, analysis, validate."""

from django.urls import path

from . import compiler_views as views

urlpatterns = [
    path("devices/<int:pk>/bundle/", views.DeviceBundleView.as_view(), name="device-bundle"),
    path("devices/<int:pk>/trace/", views.DeviceTraceView.as_view(), name="device-trace"),
    path("devices/<int:pk>/analysis/", views.DeviceAnalysisView.as_view(), name="device-analysis"),
    path(
        "rulesets/<int:pk>/analysis/", views.RuleSetAnalysisView.as_view(), name="ruleset-analysis"
    ),
    path("validate/", views.ValidateView.as_view(), name="validate"),
]
