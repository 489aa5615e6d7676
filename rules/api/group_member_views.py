"""Group members as sets over HTTP: GET …/{id}/members/ pages them (?limit=&offset=), PATCH
adds and removes ({"add": [...], "remove": [...]}), PUT replaces ({"members": [...]}), both
writing only the difference (rules.services.group_members) in one transaction and one
revision per call."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import validation_detail
from rules.models import AddressGroup, AddressGroupMember, ServiceGroupMember
from rules.revisions import revision_batch
from rules.selectors import group_member_rows, member_of_row, member_refs
from rules.services import MemberDiff, group_members_change, group_members_set


def _names(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(), **kwargs)


class MemberSerializer(serializers.Serializer):
    """One member: its name (an object or group name, or an address literal) and kind."""

    name = serializers.CharField()
    kind = serializers.CharField(help_text="object, group or literal")


class MemberChangeSerializer(serializers.Serializer):
    add = _names(required=False, default=list)
    remove = _names(required=False, default=list)


class MemberSetSerializer(serializers.Serializer):
    members = _names()


class MemberDiffSerializer(serializers.Serializer):
    added = _names(help_text="members that were not there before")
    removed = _names(help_text="members that are gone")
    count = serializers.IntegerField(help_text="members of the group afterwards")


class GroupMembersMixin:
    """Adds …/{id}/members/ to an address or service group viewset, and reads the members of
    a list page's groups in one query."""

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)  # type: ignore[misc]
        if page is not None and getattr(self, "action", None) == "list" and page:
            model = AddressGroupMember if isinstance(page[0], AddressGroup) else ServiceGroupMember
            refs = member_refs(model, [g.pk for g in page])
            for group in page:
                group.member_names = refs.get(group.pk, [])
        return page

    @extend_schema(
        methods=["GET"], responses=MemberSerializer(many=True), filters=False, request=None
    )
    @extend_schema(
        methods=["PATCH"], request=MemberChangeSerializer, responses=MemberDiffSerializer
    )
    @extend_schema(methods=["PUT"], request=MemberSetSerializer, responses=MemberDiffSerializer)
    @action(
        detail=True,
        methods=["get", "patch", "put"],
        url_path="members",
        filterset_class=None,
    )
    def members(self, request: Request, pk: str | None = None) -> Response:
        """GET: the members in order, paged. PATCH: add and remove members (idempotent; a
        name in both lists is a 400). PUT: replace the members. Writes answer with what was
        added and removed."""
        group = self.get_object()  # type: ignore[attr-defined]
        if request.method == "GET":
            page = self.paginate_queryset(group_member_rows(group))  # type: ignore[attr-defined]
            members = [dict(zip(("name", "kind"), member_of_row(r), strict=True)) for r in page]
            return self.get_paginated_response(  # type: ignore[attr-defined]
                MemberSerializer(members, many=True).data
            )
        shape = MemberChangeSerializer if request.method == "PATCH" else MemberSetSerializer
        parsed = shape(data=request.data)
        parsed.is_valid(raise_exception=True)
        try:
            with revision_batch():
                if request.method == "PATCH":
                    diff = group_members_change(group=group, **parsed.validated_data)
                else:
                    diff = group_members_set(group=group, **parsed.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError(validation_detail(exc)) from None
        return Response(MemberDiffSerializer(_diff_body(group, diff)).data)


def _diff_body(group, diff: MemberDiff) -> dict:
    count = diff.count if diff.count is not None else group.members.count()
    return {"added": diff.added, "removed": diff.removed, "count": count}
