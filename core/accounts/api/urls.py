"""/api/v1/tokens/, /api/v1/users/ and /api/v1/me/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import user_views, views

router = SimpleRouter()
router.register("tokens", views.TokenViewSet, basename="token")
router.register("users", user_views.UserViewSet, basename="user")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    *router.urls,
]
