"""Dashboard URLs, mounted at /. Login/logout keep their plain names (settings.LOGIN_URL)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard.views import (
    audit,
    deployments,
    device_changes,
    devices,
    objects,
    overview,
    revisions,
    rule_edits,
    rulesets,
    tracer,
    users,
)

dashboard_patterns = [
    path("", overview.overview, name="overview"),
    path("overview/idle-rules/", overview.overview_idle, name="overview-idle"),
    path("devices/", devices.device_list, name="devices"),
    path("devices/<int:pk>/", devices.device_detail, name="device"),
    path("devices/<int:pk>/settings/", devices.device_settings, name="device-settings"),
    path("devices/by-name/<str:name>/", devices.device_redirect, name="device-by-name"),
    path(
        "devices/changes/<int:pk>/review/",
        device_changes.device_change_review,
        name="device-change-review",
    ),
    path("rulesets/", rulesets.ruleset_list, name="rulesets"),
    path("rulesets/new/", rulesets.ruleset_form, name="ruleset-new"),
    path("rulesets/<int:pk>/", rulesets.ruleset_detail, name="ruleset"),
    path("rulesets/<int:pk>/preview/", rulesets.ruleset_preview, name="ruleset-preview"),
    path("rulesets/<int:pk>/unused/", rulesets.ruleset_unused, name="ruleset-unused"),
    path("rulesets/<int:pk>/settings/", rulesets.ruleset_form, name="ruleset-edit"),
    path("rulesets/<int:pk>/rules/new/", rule_edits.rule_form, name="rule-new"),
    path("rulesets/<int:pk>/rules/validate/", rule_edits.rule_validate, name="rule-validate-new"),
    path("rulesets/<int:pk>/rules/analyse/", rule_edits.rule_analyse, name="rule-analyse-new"),
    path("rulesets/<int:pk>/rules/place/", rule_edits.rule_place, name="rule-place"),
    path("rulesets/<int:pk>/rules/bulk/", rule_edits.rules_bulk, name="rules-bulk"),
    path("rulesets/<int:pk>/rules/<int:rule_pk>/", rule_edits.rule_form, name="rule-edit"),
    path(
        "rulesets/<int:pk>/rules/<int:rule_pk>/validate/",
        rule_edits.rule_validate,
        name="rule-validate",
    ),
    path(
        "rulesets/<int:pk>/rules/<int:rule_pk>/analyse/",
        rule_edits.rule_analyse,
        name="rule-analyse",
    ),
    path(
        "rulesets/<int:pk>/rules/<int:rule_pk>/delete/", rule_edits.rule_delete, name="rule-delete"
    ),
    path("deployments/", deployments.deployment_list, name="deployments"),
    path("deployments/new/", deployments.deploy, name="deploy"),
    path("deployments/<int:pk>/", deployments.deployment_detail, name="deployment"),
    path(
        "deployments/<int:pk>/resume/",
        deployments.deployment_resume,
        name="deployment-resume",
    ),
    path(
        "deployments/<int:pk>/cancel/",
        deployments.deployment_cancel,
        name="deployment-cancel",
    ),
    path("tracer/", tracer.tracer, name="tracer"),
    path("audit/", audit.audit_list, name="audit"),
    path("audit/export/", audit.audit_export, name="audit-export"),
    path("revisions/", revisions.revision_list, name="revisions"),
    path("approvals/", revisions.revision_list, {"pending": True}, name="approvals"),
    path("revisions/<int:pk>/", revisions.revision_detail, name="revision"),
    path("revisions/<int:pk>/rollback/", revisions.revision_rollback, name="revision-rollback"),
    path("revisions/<int:pk>/review/", revisions.revision_review, name="revision-review"),
    path("objects/", objects.object_list, name="objects-home"),
    path("objects/<slug:kind>/", objects.object_list, name="objects"),
    path("objects/<slug:kind>/new/", objects.object_form, name="object-new"),
    path("objects/<slug:kind>/<int:pk>/", objects.object_form, name="object-edit"),
    path("objects/<slug:kind>/<int:pk>/used/", objects.object_where_used, name="object-used"),
    path("objects/<slug:kind>/<int:pk>/delete/", objects.object_delete, name="object-delete"),
    path("users/", users.user_list, name="users"),
    path("users/<int:pk>/roles/", users.user_roles, name="user-roles"),
    path("users/<int:pk>/active/", users.user_active, name="user-active"),
]

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include((dashboard_patterns, "dashboard"))),
]
