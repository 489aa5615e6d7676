"""Django admin for the policy model: every model registered, rules inline and ordered."""

from django.contrib import admin

from rules.models import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    NatRule,
    Rule,
    RuleAddress,
    RuleService,
    RuleSet,
    Service,
    ServiceGroup,
    ServiceGroupMember,
)


@admin.register(AddressObject)
class AddressObjectAdmin(admin.ModelAdmin):
    list_display = ("name", "value", "kind", "family", "description", "last_updated")
    search_fields = ("name", "value", "description")


class AddressGroupMemberInline(admin.TabularInline):
    model = AddressGroupMember
    fk_name = "group"
    extra = 1
    autocomplete_fields = ("address", "subgroup")


@admin.register(AddressGroup)
class AddressGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "last_updated")
    search_fields = ("name", "description", "members__literal", "members__address__name")
    inlines = [AddressGroupMemberInline]


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("name", "protocol", "ports", "source_ports", "icmp_type")
    list_filter = ("protocol",)
    search_fields = ("name", "description")


class ServiceGroupMemberInline(admin.TabularInline):
    model = ServiceGroupMember
    fk_name = "group"
    extra = 1
    autocomplete_fields = ("service", "subgroup")


@admin.register(ServiceGroup)
class ServiceGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "description")
    search_fields = ("name", "description")
    inlines = [ServiceGroupMemberInline]


class RuleInline(admin.TabularInline):
    model = Rule
    extra = 0
    ordering = ("position",)
    fields = (
        "position",
        "enabled",
        "chain",
        "action",
        "protocol",
        "dports",
        "comment",
        "expires_at",
    )
    show_change_link = True


class NatRuleInline(admin.TabularInline):
    model = NatRule
    extra = 0
    ordering = ("position",)
    fields = (
        "position",
        "enabled",
        "type",
        "in_interface",
        "out_interface",
        "protocol",
        "dports",
        "to",
        "comment",
    )


@admin.register(RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "requires_approval", "last_updated")
    list_filter = ("requires_approval",)
    search_fields = ("name", "description")
    inlines = [RuleInline, NatRuleInline]


class RuleAddressInline(admin.TabularInline):
    model = RuleAddress
    extra = 0
    autocomplete_fields = ("address", "group")


class RuleServiceInline(admin.TabularInline):
    model = RuleService
    extra = 0
    autocomplete_fields = ("service", "group")


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = (
        "ruleset",
        "position",
        "enabled",
        "chain",
        "action",
        "protocol",
        "comment",
        "expires_at",
    )
    list_filter = ("ruleset", "chain", "action", "enabled", "protocol")
    search_fields = ("comment", "uuid", "ruleset__name")
    ordering = ("ruleset", "position")
    readonly_fields = ("uuid",)
    inlines = [RuleAddressInline, RuleServiceInline]
    list_select_related = ("ruleset",)


@admin.register(NatRule)
class NatRuleAdmin(admin.ModelAdmin):
    list_display = ("ruleset", "position", "type", "enabled", "to", "comment")
    list_filter = ("ruleset", "type", "enabled")
    search_fields = ("comment", "ruleset__name", "to")
    readonly_fields = ("uuid",)
