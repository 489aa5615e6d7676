"""Users as an admin sees and changes them. No serializer here ever reads the password
field: a password goes in (create, reset) and a generated one comes out once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from core.accounts import roles
from core.accounts.selectors import role_names_of

ROLE_HELP = "roles held: viewer, operator, approver, admin"


class RoleListField(serializers.ListField):
    child = serializers.ChoiceField(choices=roles.ALL)

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("help_text", ROLE_HELP)
        super().__init__(**kwargs)


class UserSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField(help_text=ROLE_HELP)

    class Meta:
        model = get_user_model()
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "roles",
            "is_active",
            "is_superuser",
            "last_login",
            "date_joined",
        ]
        read_only_fields = fields

    def get_roles(self, user) -> list[str]:
        return role_names_of(user)


class UserCreateSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    first_name = serializers.CharField(required=False, allow_blank=True, default="")
    last_name = serializers.CharField(required=False, allow_blank=True, default="")
    roles = RoleListField()
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        style={"input_type": "password"},
        help_text="the initial password; empty: one is generated and returned once",
    )


class UserCreatedSerializer(UserSerializer):
    password = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="the generated password, shown only in this answer; null when you gave one",
    )

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "password"]
        read_only_fields = fields


class UserRolesSerializer(serializers.Serializer):
    roles = RoleListField()


class PasswordResetSerializer(serializers.Serializer):
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        style={"input_type": "password"},
        help_text="the new password; empty: one is generated and returned once",
    )


class PasswordResetResultSerializer(serializers.Serializer):
    password = serializers.CharField(
        allow_null=True, help_text="the generated password (shown once); null when you gave one"
    )
