"""Policy API routes under /api/v1/ (SimpleRouter: each app mounting a DefaultRouter would
fight over the API root)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import compiler_urls, views, where_used_views, zone_views

router = SimpleRouter()
router.register("addresses", views.AddressObjectViewSet, basename="addressobject")
router.register("address-groups", views.AddressGroupViewSet, basename="addressgroup")
router.register("services", views.ServiceViewSet, basename="service")
router.register("service-groups", views.ServiceGroupViewSet, basename="servicegroup")
router.register("rulesets", views.RuleSetViewSet, basename="ruleset")
router.register("rules", views.RuleViewSet, basename="rule")
router.register("nat-rules", views.NatRuleViewSet, basename="natrule")
router.register("zones", zone_views.ZoneViewSet, basename="zone")

urlpatterns = [
    path("objects/unused/", where_used_views.UnusedObjectsView.as_view(), name="objects-unused"),
    *router.urls,
    *compiler_urls.urlpatterns,
]
