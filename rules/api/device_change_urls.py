"""Pending device change routes, mounted under /api/v1/."""

from django.urls import path

from . import device_change_views as views

urlpatterns = [
    path("device-changes/", views.DeviceChangeList.as_view(), name="devicechange-list"),
    path(
        "device-changes/<int:pk>/", views.DeviceChangeDetail.as_view(), name="devicechange-detail"
    ),
    path(
        "device-changes/<int:pk>/approve/",
        views.DeviceChangeApprove.as_view(),
        name="devicechange-approve",
    ),
    path(
        "device-changes/<int:pk>/reject/",
        views.DeviceChangeReject.as_view(),
        name="devicechange-reject",
    ),
]
