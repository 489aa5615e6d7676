"""Django admin for devices and device groups."""

from django.contrib import admin

from rules.models import Device, DeviceGroup, DeviceGroupRuleSet, DeviceMembership, DeviceRuleSet


class DeviceGroupRuleSetInline(admin.TabularInline):
    model = DeviceGroupRuleSet
    extra = 0
    ordering = ("position",)
    autocomplete_fields = ("ruleset",)


@admin.register(DeviceGroup)
class DeviceGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "description")
    search_fields = ("name", "description")
    inlines = [DeviceGroupRuleSetInline]


class DeviceMembershipInline(admin.TabularInline):
    model = DeviceMembership
    extra = 0
    ordering = ("position",)
    autocomplete_fields = ("group",)


class DeviceRuleSetInline(admin.TabularInline):
    model = DeviceRuleSet
    extra = 0
    ordering = ("position",)
    autocomplete_fields = ("ruleset",)


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "address",
        "agent_port",
        "status",
        "drifted",
        "last_seen_at",
        "applied_version",
    )
    list_filter = ("status", "drifted", "stateful", "auto_repair", "groups")
    search_fields = ("name", "address", "description")
    readonly_fields = (
        "agent_public_key",
        "agent_cert_fingerprint",
        "enrolled_at",
        "status",
        "last_seen_at",
        "facts",
        "applied_hash",
        "applied_version",
        "drifted",
        "drift_diff",
    )
    inlines = [DeviceMembershipInline, DeviceRuleSetInline]
