"""Serializers for rule set revisions and their review."""

from __future__ import annotations

from rest_framework import serializers

from rules.models import RuleSetRevision
from rules.revisions.member_sets import revision_snapshot


class RevisionSerializer(serializers.ModelSerializer):
    ruleset_name = serializers.CharField(source="ruleset.name", read_only=True)

    class Meta:
        model = RuleSetRevision
        fields = (
            "id",
            "ruleset",
            "ruleset_name",
            "number",
            "hash",
            "author",
            "author_name",
            "authors",
            "message",
            "parent",
            "status",
            "reviewer",
            "reviewer_name",
            "review_comment",
            "created",
            "reviewed_at",
        )
        read_only_fields = fields


class RevisionDetailSerializer(RevisionSerializer):
    snapshot = serializers.SerializerMethodField(
        help_text="the rule set and every object it refers to, group members inline"
    )

    def get_snapshot(self, revision: RuleSetRevision) -> dict:
        return revision_snapshot(revision)

    class Meta(RevisionSerializer.Meta):
        fields = (*RevisionSerializer.Meta.fields, "snapshot")
        read_only_fields = fields


class ReviewSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class RollbackSerializer(serializers.Serializer):
    message = serializers.CharField(required=False, allow_blank=True, default="")
