"""/api/v1/tokens/, /api/v1/users/ (and each user's tokens) and /api/v1/me/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import user_views, views

router = SimpleRouter()
router.register("tokens", views.TokenViewSet, basename="token")
router.register("users", user_views.UserViewSet, basename="user")

user_tokens = user_views.UserTokenViewSet

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path(
        "users/<int:user_pk>/tokens/",
        user_tokens.as_view({"get": "list"}),
        name="user-tokens",
    ),
    path(
        "users/<int:user_pk>/tokens/<str:token_key>/",
        user_tokens.as_view({"delete": "destroy"}),
        name="user-token-detail",
    ),
    *router.urls,
]
