"""Device API routes under /api/v1/ (deployments and enrollment: deploy_urls.py)."""

from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("devices", views.DeviceViewSet, basename="device")
router.register("device-groups", views.DeviceGroupViewSet, basename="devicegroup")

urlpatterns = router.urls
