"""Rule set revisions: immutable snapshots of a rule set's content, and their review state."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class RevisionStatus(models.TextChoices):
    DRAFT = "draft", "draft"  # recorded; the rule set needs no approval
    PENDING = "pending", "pending approval"
    APPROVED = "approved", "approved"
    REJECTED = "rejected", "rejected"
    SUPERSEDED = "superseded", "superseded"  # a newer pending revision replaced it


class RuleSetRevision(models.Model):
    """The content of a rule set at one moment: its document form plus every object it
    references (transitively), so an old revision deploys exactly as it was.

    Content (snapshot, hash, number, parent, author) never changes after creation; only the
    review fields move (pending → approved/rejected/superseded).
    """

    CONTENT_FIELDS = (
        "ruleset_id",
        "number",
        "snapshot",
        "hash",
        "author_id",
        "author_name",
        "message",
        "parent_id",
        "authors",
    )

    ruleset = models.ForeignKey("rules.RuleSet", on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    snapshot = models.JSONField()
    hash = models.CharField(
        max_length=64, db_index=True, help_text="sha256 of the canonical snapshot"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(
        max_length=150, help_text="username, or system:<task> / cli:<user>"
    )
    authors = models.JSONField(
        default=list,
        blank=True,
        help_text="user ids of everyone whose edits this pending change contains (none of them may approve it)",
    )
    message = models.TextField(blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    status = models.CharField(
        max_length=10, choices=RevisionStatus.choices, default=RevisionStatus.DRAFT
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer_name = models.CharField(max_length=150, blank=True)
    review_comment = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["ruleset", "-number"]
        verbose_name = "rule set revision"
        constraints = [
            models.UniqueConstraint(
                fields=["ruleset", "number"], name="rulesetrevision_unique_number"
            )
        ]
        indexes = [models.Index(fields=["ruleset", "status"], name="rulesetrevision_status")]

    def __str__(self) -> str:
        return f"{self.ruleset} r{self.number} ({self.status})"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_content = {f: instance.__dict__.get(f) for f in cls.CONTENT_FIELDS}
        return instance

    def save(self, *args, **kwargs) -> None:
        loaded = getattr(self, "_loaded_content", None)
        if loaded is not None and self.pk is not None:
            now = {f: self.__dict__.get(f) for f in self.CONTENT_FIELDS}
            # parent/author may be nulled by SET_NULL when those rows go; nothing else may change.
            edited = [
                f
                for f in self.CONTENT_FIELDS
                if now[f] != loaded[f] and not (f in ("parent_id", "author_id") and now[f] is None)
            ]
            if edited:
                raise ValidationError({f: ["a revision's content cannot change"] for f in edited})
        super().save(*args, **kwargs)
        self._loaded_content = {f: self.__dict__.get(f) for f in self.CONTENT_FIELDS}
