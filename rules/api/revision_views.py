"""Revisions over HTTP: list, show, diff, roll back, approve, reject. Each view parses, calls
one function of rules.revisions, and renders."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.accounts.permissions import CanApprove, CanEdit, CanView
from core.api_base import ETagMixin
from rules import revisions
from rules.models import RuleSet, RuleSetRevision
from rules.revisions.rollback import revision_rollback

from .revision_serializers import (
    ReviewSerializer,
    RevisionDetailSerializer,
    RevisionSerializer,
    RollbackSerializer,
)


class RevisionList(generics.ListAPIView):
    """Every revision, newest first; `?status=pending` is the approvers' queue."""

    permission_classes = [CanView]
    serializer_class = RevisionSerializer
    filterset_fields = ["status", "ruleset", "author"]
    search_fields = ["message", "author_name", "ruleset__name"]
    ordering_fields = ["created", "number"]

    def get_queryset(self):
        return RuleSetRevision.objects.select_related("ruleset").order_by("-created", "-number")


class RuleSetRevisionList(RevisionList):
    """The revisions of one rule set, newest first."""

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no URL kwargs
            return RuleSetRevision.objects.none()
        ruleset = get_object_or_404(RuleSet, pk=self.kwargs["ruleset_id"])
        return ruleset.revisions.select_related("ruleset").order_by("-number")


class RevisionDetail(ETagMixin, generics.RetrieveAPIView):
    """One revision, with its content."""

    permission_classes = [CanView]
    serializer_class = RevisionDetailSerializer
    queryset = RuleSetRevision.objects.select_related("ruleset")


class RevisionDiff(APIView):
    """Rule-level diff from `against` (default: the parent revision) to this revision."""

    permission_classes = [CanView]

    @extend_schema(
        parameters=[OpenApiParameter("against", OpenApiTypes.INT)], responses=OpenApiTypes.OBJECT
    )
    def get(self, request: Request, pk: int) -> Response:
        revision = get_object_or_404(RuleSetRevision, pk=pk)
        against = request.query_params.get("against")
        if against is None:
            if revision.parent_id is None:
                raise ValidationError(
                    {"against": ["this is the first revision: name one to compare with"]}
                )
            base = revision.parent
        else:
            if not against.isdecimal():
                raise ValidationError({"against": ["must be a revision id"]})
            base = get_object_or_404(RuleSetRevision, pk=int(against))
        return Response(revisions.revision_diff(base, revision))


class RevisionRollback(APIView):
    """Make this revision's content current again (a new revision; pending if approval is needed)."""

    permission_classes = [CanEdit]

    @extend_schema(request=RollbackSerializer, responses=RevisionSerializer)
    def post(self, request: Request, pk: int) -> Response:
        revision = get_object_or_404(RuleSetRevision, pk=pk)
        body = RollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        new = revision_rollback(
            revision=revision, author=request.user, message=body.validated_data["message"]
        )
        data = RevisionSerializer(new).data
        data["conflicts"] = getattr(new, "conflicts", [])
        return Response(data, status=status.HTTP_201_CREATED)


class _Review(APIView):
    permission_classes = [CanApprove]
    approve = True

    @extend_schema(request=ReviewSerializer, responses=RevisionSerializer)
    def post(self, request: Request, pk: int) -> Response:
        revision = get_object_or_404(RuleSetRevision, pk=pk)
        body = ReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        review = revisions.revision_approve if self.approve else revisions.revision_reject
        done = review(
            revision=revision, reviewer=request.user, comment=body.validated_data["comment"]
        )
        return Response(RevisionSerializer(done).data)


class RevisionApprove(_Review):
    """Approve a pending change. Its author(s) cannot; only approved revisions deploy."""

    approve = True


class RevisionReject(_Review):
    """Reject a pending change; a comment is required."""

    approve = False
