"""Revision forms: roll a rule set back to a revision, approve or reject a pending one."""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied

from dashboard.forms.base import ServiceForm
from rules.revisions import revision_approve, revision_reject
from rules.revisions.rollback import revision_rollback


class RollbackForm(ServiceForm):
    message = forms.CharField(required=False, max_length=500, label="Why roll back?")

    def save(self, revision, user):
        if not self.is_valid():
            return None
        return self.run(
            lambda: revision_rollback(
                revision=revision, author=user, message=self.cleaned_data["message"]
            )
        )


class ReviewForm(ServiceForm):
    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])
    comment = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def save(self, revision, user):
        if not self.is_valid():
            return None
        review = revision_approve if self.cleaned_data["decision"] == "approve" else revision_reject
        try:
            return self.run(
                lambda: review(
                    revision=revision, reviewer=user, comment=self.cleaned_data["comment"]
                )
            )
        except PermissionDenied as exc:  # e.g. reviewing one's own change: say why, on the form
            self.add_error(None, str(exc))
            return None
