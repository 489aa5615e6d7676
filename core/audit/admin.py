"""The audit log in the admin: readable by staff, never editable or deletable."""

from django.contrib import admin

from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = (
        "seq",
        "time",
        "actor",
        "channel",
        "action",
        "object_type",
        "object_name",
        "request_id",
    )
    list_filter = ("channel", "action", "object_type")
    search_fields = ("actor", "object_name", "object_id", "reason", "ticket", "request_id")
    date_hierarchy = "time"
    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
