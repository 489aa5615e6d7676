"""Tokens and the signed-in user over HTTP."""

from __future__ import annotations

from knox.models import AuthToken
from rest_framework import serializers


class TokenSerializer(serializers.ModelSerializer):
    """A token as listed: its public prefix and when it expires, never its key."""

    token_key = serializers.CharField(
        read_only=True, help_text="the key's first characters; names the token"
    )
    expiry = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="null: never expires"
    )

    class Meta:
        model = AuthToken
        fields = ["token_key", "created", "expiry"]
        read_only_fields = fields


class UserTokenSerializer(TokenSerializer):
    """A token as an admin lists it: also whose it is."""

    username = serializers.CharField(source="user.username", read_only=True)

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "username"]
        read_only_fields = fields


class TokenCreateSerializer(serializers.Serializer):
    expires_in_days = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="default: RAMPART_TOKEN_TTL_DAYS; at most RAMPART_TOKEN_MAX_TTL_DAYS",
    )


class TokenCreatedSerializer(TokenSerializer):
    """The one response that carries the key: store it now, it cannot be shown again."""

    key = serializers.CharField(read_only=True, help_text="send as `Authorization: Token <key>`")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "key"]
        read_only_fields = fields


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    roles = serializers.ListField(
        child=serializers.CharField(), help_text="viewer, operator, approver, admin"
    )
    is_superuser = serializers.BooleanField()
