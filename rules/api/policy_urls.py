"""Routes of policy as code: /api/v1/policy/..."""

from django.urls import path

from . import policy_views

urlpatterns = [
    path("policy/import/", policy_views.PolicyImportView.as_view(), name="policy-import"),
    path("policy/export/", policy_views.PolicyExportView.as_view(), name="policy-export"),
    path(
        "policy/from-iptables-save/",
        policy_views.FromIptablesSaveView.as_view(),
        name="policy-from-iptables-save",
    ),
]
