"""Every app's API routes, mounted under /api/v1/."""

from django.urls import include, path

urlpatterns = [
    path("", include("rules.api.urls")),
    path("", include("agents.api.urls")),
]
