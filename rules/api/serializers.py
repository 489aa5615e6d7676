"""Policy objects over HTTP, in the policy document's shape: references are names.

Serializers parse the shape; the models and rules.services validate and write.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api_base import NameListField
from rules import services as rule_services
from rules.api.base import PolicyModelSerializer
from rules.choices import Side
from rules.models import (
    AddressGroup,
    AddressObject,
    NatRule,
    Rule,
    RuleSet,
    Service,
    ServiceGroup,
)
from rules.selectors import group_member_names


def _strings(**kwargs) -> serializers.ListField:
    """A list of strings (ports, states, names): the model decides which strings are valid."""
    return serializers.ListField(child=serializers.CharField(), required=False, **kwargs)


def _member_names(group: AddressGroup | ServiceGroup) -> list[str]:
    """All members by name (plain rows; page them at …/{id}/members/). A list page reads
    its groups' members in one query beforehand (`GroupMembersMixin.paginate_queryset`)."""
    read = getattr(group, "member_names", None)
    if read is not None:
        return read
    return group_member_names(group)


class AddressObjectSerializer(PolicyModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="addressobject-detail")
    kind = serializers.CharField(read_only=True, help_text="host, network or range")
    family = serializers.IntegerField(read_only=True, allow_null=True, help_text="4 or 6")

    class Meta:
        model = AddressObject
        fields = [
            "id",
            "url",
            "name",
            "value",
            "description",
            "kind",
            "family",
            "created",
            "last_updated",
        ]


class AddressGroupSerializer(PolicyModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="addressgroup-detail")
    members = NameListField(
        _member_names, help_text="address names, group names or literals, in order"
    )
    ref_fields = ("members",)

    class Meta:
        model = AddressGroup
        fields = ["id", "url", "name", "description", "members", "created", "last_updated"]

    def save_refs(self, obj: AddressGroup, refs: dict) -> None:
        if "members" in refs:
            rule_services.address_group_set_members(group=obj, members=refs["members"])


class ServiceSerializer(PolicyModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="service-detail")
    ports = _strings(help_text='destination ports: ["443", "8000-8100"]')
    source_ports = _strings()

    class Meta:
        model = Service
        fields = [
            "id",
            "url",
            "name",
            "protocol",
            "ports",
            "source_ports",
            "icmp_type",
            "description",
            "created",
            "last_updated",
        ]


class ServiceGroupSerializer(PolicyModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="servicegroup-detail")
    members = NameListField(
        _member_names, help_text="service names or service group names, in order"
    )
    ref_fields = ("members",)

    class Meta:
        model = ServiceGroup
        fields = ["id", "url", "name", "description", "members", "created", "last_updated"]

    def save_refs(self, obj: ServiceGroup, refs: dict) -> None:
        if "members" in refs:
            rule_services.service_group_set_members(group=obj, members=refs["members"])


class AssertionSerializer(serializers.Serializer):
    """A packet and the verdict the compiled policy must give it (documentation of the shape)."""

    chain = serializers.CharField()
    protocol = serializers.CharField(required=False)
    source = serializers.CharField(required=False)
    destination = serializers.CharField(required=False)
    sport = serializers.IntegerField(required=False)
    dport = serializers.IntegerField(required=False)
    expect = serializers.CharField()


@extend_schema_field(AssertionSerializer(many=True))
class AssertionsField(serializers.JSONField):
    """Here only the shape; RuleSet.clean checks each assertion with the compiler's parser
    (a 400 on `assertions` naming the entry and key), and deploys evaluate them."""

    def to_internal_value(self, data):
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise serializers.ValidationError("must be a list of objects")
        return data


class RuleSetSerializer(PolicyModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="ruleset-detail")
    assertions = AssertionsField(required=False)
    rule_count = serializers.IntegerField(read_only=True)
    nat_rule_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = RuleSet
        fields = [
            "id",
            "url",
            "name",
            "description",
            "requires_approval",
            "assertions",
            "rule_count",
            "nat_rule_count",
            "created",
            "last_updated",
        ]


# --- rules -------------------------------------------------------------------------------


def _addresses(side: str):
    def read(rule: Rule) -> list[str]:
        return [link.ref for link in rule.addresses.all() if link.side == side]

    return read


def _services(rule: Rule) -> list[str]:
    return [link.ref for link in rule.service_refs.all()]


class RuleWriteSerializer(serializers.ModelSerializer):
    """The fields a client sets on a rule (the policy document's rule, minus its id)."""

    sources = NameListField(
        _addresses(Side.SOURCE), help_text="address names, group names or literals; empty = any"
    )
    destinations = NameListField(_addresses(Side.DESTINATION), help_text="as sources")
    services = NameListField(
        _services, help_text="service or service group names; or protocol + ports"
    )
    dports = _strings(help_text='["80", "8000-8100"]; needs protocol tcp or udp')
    sports = _strings()
    states = _strings(help_text='conntrack states, e.g. ["new"]')

    class Meta:
        model = Rule
        fields = [*rule_services.RULE_SCALAR_FIELDS, "sources", "destinations", "services"]
        extra_kwargs = {"log_prefix": {"trim_whitespace": False}}  # "dropped: " ends with its space


class RuleSerializer(RuleWriteSerializer):
    """A rule; `position` is 1-based within its rule set (giving one on create inserts there)."""

    url = serializers.HyperlinkedIdentityField(view_name="rule-detail")
    ruleset = serializers.PrimaryKeyRelatedField(queryset=RuleSet.objects.all())
    ruleset_name = serializers.CharField(source="ruleset.name", read_only=True)
    position = serializers.IntegerField(min_value=1, required=False)

    class Meta(RuleWriteSerializer.Meta):
        fields = [
            "id",
            "url",
            "uuid",
            "ruleset",
            "ruleset_name",
            "position",
            *RuleWriteSerializer.Meta.fields,
            "created",
            "last_updated",
        ]
        read_only_fields = ["uuid", "created", "last_updated"]

    def validate_ruleset(self, value: RuleSet) -> RuleSet:
        if self.instance is not None and value.pk != self.instance.ruleset_id:
            raise serializers.ValidationError("a rule cannot move to another rule set")
        return value

    def create(self, validated_data: dict) -> Rule:
        ruleset = validated_data.pop("ruleset")
        position = validated_data.pop("position", None)
        return rule_services.rule_create(ruleset=ruleset, data=validated_data, position=position)

    def update(self, instance: Rule, validated_data: dict) -> Rule:
        validated_data.pop("ruleset", None)
        return rule_services.rule_update(rule=instance, data=validated_data)


class RuleMoveSerializer(serializers.Serializer):
    position = serializers.IntegerField(min_value=1, help_text="1-based; beyond the end means last")


class RuleBulkCreateItemSerializer(RuleWriteSerializer):
    """A rule to create; without `position` it goes to the end."""

    position = serializers.IntegerField(min_value=1, required=False)
    uuid = serializers.UUIDField(
        required=False, help_text="stable identity (the policy document's id)"
    )

    class Meta(RuleWriteSerializer.Meta):
        fields = ["position", "uuid", *RuleWriteSerializer.Meta.fields]


class RuleBulkUpdateItemSerializer(RuleWriteSerializer):
    """Fields to change on one rule, named by its id; fields left out keep their values."""

    id = serializers.IntegerField()

    class Meta(RuleWriteSerializer.Meta):
        fields = ["id", *RuleWriteSerializer.Meta.fields]


class _ObjectField(serializers.Field):
    """A JSON object passed on as is: the service validates each item with the model, and a
    full DRF serializer per item would cost seconds for 10,000 rules."""

    default_error_messages = {"invalid": "must be an object"}

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


@extend_schema_field(RuleBulkCreateItemSerializer)
class RuleCreateItemField(_ObjectField):
    pass


@extend_schema_field(RuleBulkUpdateItemSerializer)
class RuleUpdateItemField(_ObjectField):
    pass


class RuleBulkSerializer(serializers.Serializer):
    """One all-or-nothing change of a rule set: delete, update, reorder, then create."""

    create = serializers.ListField(child=RuleCreateItemField(), required=False)
    update = serializers.ListField(child=RuleUpdateItemField(), required=False)
    delete = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="rule ids"
    )
    order = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        allow_null=True,
        help_text="every remaining rule id of the set, in the new order (before creating)",
    )


class RuleBulkResultSerializer(serializers.Serializer):
    created = serializers.ListField(
        child=serializers.IntegerField(), help_text="ids, in request order"
    )
    updated = serializers.ListField(child=serializers.IntegerField())
    deleted = serializers.ListField(child=serializers.IntegerField())
    count = serializers.IntegerField(help_text="rules in the rule set afterwards")


class NatRuleSerializer(PolicyModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="natrule-detail")
    ruleset = serializers.PrimaryKeyRelatedField(queryset=RuleSet.objects.all())
    position = serializers.IntegerField(
        min_value=0, required=False, help_text="default: after the last"
    )
    dports = _strings()
    sources = _strings(help_text="address names or literals")
    destinations = _strings(help_text="address names or literals")

    class Meta:
        model = NatRule
        fields = [
            "id",
            "url",
            "uuid",
            "ruleset",
            "position",
            "enabled",
            "type",
            "in_interface",
            "out_interface",
            "in_zone",
            "out_zone",
            "protocol",
            "dports",
            "sources",
            "destinations",
            "to",
            "comment",
        ]
        read_only_fields = ["uuid"]

    def validate_ruleset(self, value: RuleSet) -> RuleSet:
        if self.instance is not None and value.pk != self.instance.ruleset_id:
            raise serializers.ValidationError("a NAT rule cannot move to another rule set")
        return value

    def create(self, validated_data: dict) -> NatRule:
        position = validated_data.pop("position", None)
        return rule_services.nat_rule_create(nat=NatRule(**validated_data), position=position)
