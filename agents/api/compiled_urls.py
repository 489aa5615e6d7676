"""A device's compiled policy under /api/v1/devices/{id}/: bundle, trace, analysis, diff."""

from django.urls import path

from . import compiled_views as views

urlpatterns = [
    path("devices/<int:pk>/bundle/", views.DeviceBundleView.as_view(), name="device-bundle"),
    path("devices/<int:pk>/trace/", views.DeviceTraceView.as_view(), name="device-trace"),
    path("devices/<int:pk>/analysis/", views.DeviceAnalysisView.as_view(), name="device-analysis"),
    path("devices/<int:pk>/diff/", views.DeviceDiffView.as_view(), name="device-diff"),
]
