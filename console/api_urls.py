"""Every app's API routes, mounted under /api/v1/, and the root that lists them."""

from django.urls import include, path

from core.api_root import ApiRootView


class RootView(ApiRootView):
    """The resources of this console: name -> list URL."""

    resources = {
        "addresses": "addressobject-list",
        "address-groups": "addressgroup-list",
        "services": "service-list",
        "service-groups": "servicegroup-list",
        "rulesets": "ruleset-list",
        "rules": "rule-list",
        "nat-rules": "natrule-list",
        "zones": "zone-list",
        "revisions": "revision-list",
        "device-changes": "devicechange-list",
        "devices": "device-list",
        "device-groups": "devicegroup-list",
        "deployments": "deployment-list",
        "rule-counters": "rulecounter-list",
        "policy-import": "policy-import",
        "policy-export": "policy-export",
        "validate": "validate",
        "audit": "audit-list",
        "tokens": "token-list",
        "users": "user-list",
        "me": "me",
    }


urlpatterns = [
    path("", RootView.as_view(), name="api-root"),
    path("", include("core.audit.urls")),
    path("", include("rules.api.revision_urls")),
    path("", include("rules.api.device_change_urls")),
    path("", include("rules.api.urls")),
    path("", include("rules.api.policy_urls")),
    path("", include("agents.api.urls")),
    path("", include("agents.api.deploy_urls")),
    path("", include("agents.api.compiled_urls")),
    path("", include("core.accounts.api.urls")),
]
