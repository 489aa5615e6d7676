"""Revision API routes, mounted under /api/v1/ (before the rule set router)."""

from django.urls import path

from . import revision_views as views

urlpatterns = [
    path(
        "rulesets/<int:ruleset_id>/revisions/",
        views.RuleSetRevisionList.as_view(),
        name="ruleset-revisions",
    ),
    path("revisions/", views.RevisionList.as_view(), name="revision-list"),
    path("revisions/<int:pk>/", views.RevisionDetail.as_view(), name="revision-detail"),
    path("revisions/<int:pk>/diff/", views.RevisionDiff.as_view(), name="revision-diff"),
    path(
        "revisions/<int:pk>/rollback/", views.RevisionRollback.as_view(), name="revision-rollback"
    ),
    path("revisions/<int:pk>/approve/", views.RevisionApprove.as_view(), name="revision-approve"),
    path("revisions/<int:pk>/reject/", views.RevisionReject.as_view(), name="revision-reject"),
]
