"""/api/v1/users/: an admin lists, creates, re-roles, deactivates and reactivates users and
resets their passwords; /api/v1/users/{id}/tokens/: lists or revokes their API tokens.
Admin role only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from core.accounts import selectors, services
from core.accounts.errors import AccountConflict, AccountForbidden
from core.accounts.filtersets import UserFilterSet
from core.accounts.permissions import IsRampartAdmin
from core.api_base import Conflict, ErrorSerializer, ETagMixin

from .serializers import UserTokenSerializer
from .user_serializers import (
    PasswordResetResultSerializer,
    PasswordResetSerializer,
    UserCreatedSerializer,
    UserCreateSerializer,
    UserRolesSerializer,
    UserSerializer,
)

_REFUSED = OpenApiResponse(
    ErrorSerializer,
    description="the change would lock the console out: your own admin role or account, "
    "or the last active admin (the reason is given)",
)


@contextmanager
def refusals() -> Iterator[None]:
    """A service's refusal as its HTTP status: 409 for a lock-out, 403 for a superuser."""
    try:
        yield
    except AccountConflict as exc:
        raise Conflict(detail={"non_field_errors": [str(exc)]}) from None
    except AccountForbidden as exc:
        raise PermissionDenied(detail=str(exc)) from None


class UserViewSet(
    ETagMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Users and their roles. Users are deactivated, never deleted (the audit log names them)."""

    permission_classes = [IsRampartAdmin]
    serializer_class = UserSerializer
    filterset_class = UserFilterSet
    search_fields = ["username", "email", "first_name", "last_name"]
    ordering_fields = ["username", "last_login", "date_joined"]

    def get_queryset(self):
        return selectors.user_list()

    def _answer(self, user) -> Response:
        return Response(UserSerializer(self.get_queryset().get(pk=user.pk)).data)

    @extend_schema(request=UserCreateSerializer, responses={201: UserCreatedSerializer})
    def create(self, request: Request) -> Response:
        params = UserCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        user, generated = services.user_create(
            username=data["username"],
            role_names=data["roles"],
            email=data["email"],
            first_name=data["first_name"],
            last_name=data["last_name"],
            password=data.get("password") or None,
        )
        body = dict(UserSerializer(self.get_queryset().get(pk=user.pk)).data)
        body["password"] = generated
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @extend_schema(
        request=UserRolesSerializer,
        responses={200: UserSerializer, 409: _REFUSED},
        description="Set the roles the user holds (all of them: roles left out are removed).",
    )
    @action(detail=True, methods=["post"])
    def roles(self, request: Request, pk: str) -> Response:
        params = UserRolesSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        with refusals():
            user = services.user_set_roles(
                actor=request.user,
                user=self.get_object(),
                role_names=params.validated_data["roles"],
            )
        return self._answer(user)

    @extend_schema(
        request=None,
        responses={200: UserSerializer, 409: _REFUSED},
        description="The user can no longer log in; their sessions end and tokens are revoked.",
    )
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, pk: str) -> Response:
        with refusals():
            user = services.user_deactivate(actor=request.user, user=self.get_object())
        return self._answer(user)

    @extend_schema(request=None, responses={200: UserSerializer})
    @action(detail=True, methods=["post"])
    def reactivate(self, request: Request, pk: str) -> Response:
        with refusals():
            user = services.user_reactivate(actor=request.user, user=self.get_object())
        return self._answer(user)

    @extend_schema(request=PasswordResetSerializer, responses={200: PasswordResetResultSerializer})
    @action(detail=True, methods=["post"], url_path="reset-password")
    def reset_password(self, request: Request, pk: str) -> Response:
        params = PasswordResetSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        with refusals():
            generated = services.user_reset_password(
                actor=request.user,
                user=self.get_object(),
                password=params.validated_data.get("password") or None,
            )
        return Response({"password": generated}, headers={"Cache-Control": "no-store"})


class UserTokenViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Any user's API tokens, for an admin: list them (prefixes and expiry), revoke one."""

    permission_classes = [IsRampartAdmin]
    serializer_class = UserTokenSerializer
    lookup_field = "token_key"
    pagination_class = None
    filterset_class = None
    search_fields: list[str] = []
    ordering_fields = ["created", "expiry"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return AuthToken.objects.none()
        user = get_object_or_404(get_user_model(), pk=self.kwargs["user_pk"])
        return selectors.tokens_of(user)

    def perform_destroy(self, instance: AuthToken) -> None:
        services.token_revoke(token=instance)
