"""Serializers of pending device changes and their review."""

from __future__ import annotations

from rest_framework import serializers

from rules.models import PendingDeviceChange


class PendingDeviceChangeSerializer(serializers.ModelSerializer):
    """A change of what a device enforces (or of a device group's rule sets), waiting for
    (or given) a second person's review; `device` or `group` names what it is for.

    `before` holds the approved values of the fields it changes, `after` the requested ones
    (groups and rule sets as ordered name lists)."""

    device_name = serializers.CharField(
        source="device.name", read_only=True, allow_null=True, default=None
    )
    group_name = serializers.CharField(
        source="group.name", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = PendingDeviceChange
        fields = (
            "id",
            "device",
            "device_name",
            "group",
            "group_name",
            "status",
            "before",
            "after",
            "author",
            "author_name",
            "authors",
            "reason",
            "reviewer",
            "reviewer_name",
            "review_comment",
            "created",
            "reviewed_at",
        )
        read_only_fields = fields
