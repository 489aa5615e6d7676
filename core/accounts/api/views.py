"""A user's own API tokens and who they are. Everyone signed in may list and revoke their own
tokens; creating one needs a role listed in RAMPART_TOKEN_ROLES."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from knox.models import AuthToken
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.accounts import roles, services
from core.accounts.errors import TokenRoleRefused
from core.accounts.permissions import CanMintToken, IsAuthenticatedSelf

from .serializers import (
    MeSerializer,
    TokenCreatedSerializer,
    TokenCreateSerializer,
    TokenSerializer,
)


class TokenViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The caller's tokens: list (no keys), create (the key is shown once), revoke."""

    serializer_class = TokenSerializer
    permission_classes = [IsAuthenticatedSelf]
    lookup_field = "token_key"
    filterset_class = None
    search_fields: list[str] = []
    ordering_fields = ["created", "expiry"]

    def get_permissions(self):
        if self.action == "create":
            return [CanMintToken()]
        return super().get_permissions()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return AuthToken.objects.none()
        return AuthToken.objects.filter(user=self.request.user).order_by("-created")

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenCreatedSerializer})
    def create(self, request: Request) -> Response:
        serializer = TokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            token, key = services.token_create(
                user=request.user, expires_in_days=serializer.validated_data.get("expires_in_days")
            )
        except TokenRoleRefused as exc:  # roles changed since the permission check
            raise PermissionDenied(detail=str(exc)) from None
        token.key = key
        return Response(
            TokenCreatedSerializer(token).data,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )

    def perform_destroy(self, instance: AuthToken) -> None:
        services.token_revoke(token=instance)


class MeView(APIView):
    """Who the caller is and which roles they hold (the UI and CI use it to check a token)."""

    permission_classes = [IsAuthenticatedSelf]

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        user = request.user
        data = {
            "username": user.get_username(),
            "roles": sorted(roles.roles_of(user)),
            "is_superuser": user.is_superuser,
        }
        return Response(MeSerializer(data).data)
