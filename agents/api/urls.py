"""Device API routes under /api/v1/ (deployments and enrollment: deploy_urls.py), and a rule
set's draft analysis (it reads the devices applying the rule set, hence here)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import draft_views, views

router = SimpleRouter()
router.register("devices", views.DeviceViewSet, basename="device")
router.register("device-groups", views.DeviceGroupViewSet, basename="devicegroup")

urlpatterns = [
    *router.urls,
    path(
        "rulesets/<int:pk>/analyse-draft/",
        draft_views.RuleSetDraftAnalysisView.as_view(),
        name="ruleset-analyse-draft",
    ),
]
