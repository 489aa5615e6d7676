"""Pending device changes over HTTP: list, show, approve, reject. Each view parses, calls one
service of rules.services.device_changes, and renders."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.accounts.permissions import CanApprove, CanView
from rules.models import PendingDeviceChange
from rules.services import device_change_approve, device_change_reject

from .device_change_serializers import PendingDeviceChangeSerializer
from .revision_serializers import ReviewSerializer


class DeviceChangeList(generics.ListAPIView):
    """Every device (and device group) change, newest first; `?status=pending` is the
    approvers' queue."""

    permission_classes = [CanView]
    serializer_class = PendingDeviceChangeSerializer
    filterset_fields = ["status", "device", "group", "author"]
    search_fields = ["author_name", "device__name", "group__name", "reason"]
    ordering_fields = ["created"]

    def get_queryset(self):
        return PendingDeviceChange.objects.select_related("device", "group").order_by(
            "-created", "-id"
        )


class DeviceChangeDetail(generics.RetrieveAPIView):
    permission_classes = [CanView]
    serializer_class = PendingDeviceChangeSerializer
    queryset = PendingDeviceChange.objects.select_related("device", "group")


class _Review(APIView):
    permission_classes = [CanApprove]
    approve = True

    @extend_schema(request=ReviewSerializer, responses=PendingDeviceChangeSerializer)
    def post(self, request: Request, pk: int) -> Response:
        change = get_object_or_404(PendingDeviceChange, pk=pk)
        body = ReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        review = device_change_approve if self.approve else device_change_reject
        done = review(change=change, reviewer=request.user, comment=body.validated_data["comment"])
        return Response(PendingDeviceChangeSerializer(done).data)


class DeviceChangeApprove(_Review):
    """Approve a pending change and write it to the device (or group); its author(s)
    cannot. The next deployment pushes it."""

    approve = True


class DeviceChangeReject(_Review):
    """Reject a pending change (a comment is required); the device (or group) keeps its
    approved settings."""

    approve = False
