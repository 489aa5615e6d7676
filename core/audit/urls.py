"""Audit API routes, mounted under /api/v1/."""

from django.urls import path

from . import api

urlpatterns = [
    path("audit/", api.AuditEntryList.as_view(), name="audit-list"),
    path("audit/verify/", api.AuditVerify.as_view(), name="audit-verify"),
    path("audit/export/", api.AuditExport.as_view(), name="audit-export"),
    path("audit/<int:pk>/", api.AuditEntryDetail.as_view(), name="audit-detail"),
]
