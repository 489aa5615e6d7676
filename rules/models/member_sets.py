"""Content-addressed member lists: a group's members as one compressed row, keyed by the
sha256 of the list's canonical JSON, written once and shared by every revision snapshot
that holds exactly that list (a 100,000-member group is ~250 kB here instead of 1.6 MB of
JSON in every revision)."""

from __future__ import annotations

from django.db import models


class MemberSet(models.Model):
    """One member list, in its order (documents round-trip it as written)."""

    hash = models.CharField(
        max_length=64, primary_key=True, help_text="sha256 of the list's canonical JSON"
    )
    count = models.PositiveIntegerField()
    data = models.BinaryField(help_text="zlib-compressed canonical JSON of the list")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "member set"

    def __str__(self) -> str:
        return f"{self.hash[:12]} ({self.count} members)"
