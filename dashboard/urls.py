"""Dashboard URLs, mounted at /. Login/logout keep their plain names (settings.LOGIN_URL)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard import views

dashboard_patterns = [
    path("", views.overview, name="overview"),
    path("overview/idle-rules/", views.overview_idle, name="overview-idle"),
    path("devices/", views.device_list, name="devices"),
    path("devices/<int:pk>/", views.device_detail, name="device"),
    path("devices/by-name/<str:name>/", views.device_redirect, name="device-by-name"),
    path("rulesets/", views.ruleset_list, name="rulesets"),
    path("rulesets/new/", views.ruleset_form, name="ruleset-new"),
    path("rulesets/<int:pk>/", views.ruleset_detail, name="ruleset"),
    path("rulesets/<int:pk>/preview/", views.ruleset_preview, name="ruleset-preview"),
    path("rulesets/<int:pk>/settings/", views.ruleset_form, name="ruleset-edit"),
    path("rulesets/<int:pk>/rules/new/", views.rule_form, name="rule-new"),
    path("rulesets/<int:pk>/rules/validate/", views.rule_validate, name="rule-validate-new"),
    path("rulesets/<int:pk>/rules/place/", views.rule_place, name="rule-place"),
    path("rulesets/<int:pk>/rules/bulk/", views.rules_bulk, name="rules-bulk"),
    path("rulesets/<int:pk>/rules/<int:rule_pk>/", views.rule_form, name="rule-edit"),
    path(
        "rulesets/<int:pk>/rules/<int:rule_pk>/validate/", views.rule_validate, name="rule-validate"
    ),
    path("rulesets/<int:pk>/rules/<int:rule_pk>/delete/", views.rule_delete, name="rule-delete"),
    path("deployments/", views.deployment_list, name="deployments"),
    path("deployments/new/", views.deploy, name="deploy"),
    path("deployments/<int:pk>/", views.deployment_detail, name="deployment"),
    path("tracer/", views.tracer, name="tracer"),
    path("audit/", views.audit_list, name="audit"),
    path("audit/export/", views.audit_export, name="audit-export"),
    path("revisions/", views.revision_list, name="revisions"),
    path("approvals/", views.revision_list, {"pending": True}, name="approvals"),
    path("revisions/<int:pk>/", views.revision_detail, name="revision"),
    path("revisions/<int:pk>/rollback/", views.revision_rollback, name="revision-rollback"),
    path("revisions/<int:pk>/review/", views.revision_review, name="revision-review"),
    path("objects/", views.object_list, name="objects-home"),
    path("objects/<slug:kind>/", views.object_list, name="objects"),
    path("objects/<slug:kind>/new/", views.object_form, name="object-new"),
    path("objects/<slug:kind>/<int:pk>/", views.object_form, name="object-edit"),
    path("objects/<slug:kind>/<int:pk>/used/", views.object_where_used, name="object-used"),
    path("objects/<slug:kind>/<int:pk>/delete/", views.object_delete, name="object-delete"),
]

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include((dashboard_patterns, "dashboard"))),
]
