"""Every app's API routes, mounted under /api/v1/."""

from django.urls import include, path

urlpatterns = [
    path("", include("core.audit.urls")),
    path("", include("rules.api.revision_urls")),
    path("", include("rules.api.urls")),
    path("", include("rules.api.policy_urls")),
    path("", include("agents.api.urls")),
    path("", include("agents.api.deploy_urls")),
    path("", include("agents.api.compiled_urls")),
    path("", include("core.accounts.api.urls")),
]
