"""Routes: /api/v1/deployments/, enrollment, rule counters."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import deploy_views

router = SimpleRouter()
router.register("deployments", deploy_views.DeploymentViewSet, basename="deployment")

urlpatterns = [
    path(
        "devices/<int:pk>/enrollment-token/",
        deploy_views.EnrollmentTokenCreateView.as_view(),
        name="device-enrollment-token",
    ),
    path("agents/enroll/", deploy_views.EnrollView.as_view(), name="agent-enroll"),
    path("rule-counters/", deploy_views.RuleCounterList.as_view(), name="rulecounter-list"),
    path(
        "rule-counters/unused/", deploy_views.UnusedRulesView.as_view(), name="rulecounter-unused"
    ),
    *router.urls,
]
