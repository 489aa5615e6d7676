"""Rule sets: ordered filter rules, NAT rules and assertions."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models

from compiler import values
from compiler.validate import NON_FIELD, assertion_errors, nat_errors, rule_errors
from rules.choices import Action, Chain, NatChain, NatType, Protocol, Side
from rules.document_form import RULE_COLUMNS, nat_dict, rule_dict

from .base import NamedModel, raise_if
from .objects import AddressGroup, AddressGroupMember, AddressObject
from .zones import Zone

_NOT_CHECKED = ("id", "ruleset_id")  # not rule fields: the rule set and row ids


class RuleSet(NamedModel):
    """An ordered list of rules that devices and device groups apply."""

    requires_approval = models.BooleanField(
        default=False, help_text="edits become pending changes that an approver must accept"
    )
    assertions = models.JSONField(
        default=list,
        blank=True,
        help_text="packets with an expected verdict, checked on validate and before every deploy",
    )

    class Meta(NamedModel.Meta):
        verbose_name = "rule set"

    def clean(self) -> None:
        """Assertions are checked by the compiler's own parser when written, so a bad one
        is refused here rather than failing every later deploy of the rule set."""
        if not isinstance(self.assertions, list):
            raise_if({"assertions": ["must be a list of assertions"]})
        problems: list[str] = []
        for i, item in enumerate(self.assertions):
            for key, messages in assertion_errors(item).items():
                where = f"[{i}]" if key == NON_FIELD else f"[{i}].{key}"
                problems += [f"{where}: {m}" for m in messages]
        raise_if({"assertions": problems} if problems else {})


class Rule(models.Model):
    """One filter rule. The first matching rule decides (see POLICY-FORMAT.md)."""

    ruleset = models.ForeignKey("rules.RuleSet", on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField(default=0, db_index=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    enabled = models.BooleanField(default=True)
    chain = models.CharField(max_length=8, choices=Chain.choices, default=Chain.INPUT)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.ACCEPT)
    sources_negate = models.BooleanField(default=False)
    destinations_negate = models.BooleanField(default=False)
    protocol = models.CharField(
        max_length=8,
        choices=Protocol.choices,
        blank=True,
        help_text="literal protocol when no services are given",
    )
    dports = models.JSONField(default=list, blank=True)
    sports = models.JSONField(default=list, blank=True)
    icmp_type = models.CharField(max_length=32, blank=True)
    reject_with = models.CharField(
        max_length=24,
        blank=True,
        choices=[(v, v) for v in values.REJECT_WITH],
        help_text="how a reject answers; empty = icmp-port-unreachable (icmp6 for IPv6)",
    )
    in_interface = models.CharField(max_length=16, blank=True)
    out_interface = models.CharField(max_length=16, blank=True)
    in_zone = models.CharField(max_length=63, blank=True, help_text="a zone's name")
    out_zone = models.CharField(max_length=63, blank=True, help_text="a zone's name")
    states = models.JSONField(default=list, blank=True, help_text='conntrack states, e.g. ["new"]')
    log = models.BooleanField(default=False)
    log_prefix = models.CharField(max_length=29, blank=True)
    rate_limit = models.CharField(max_length=20, blank=True, help_text="e.g. 10/second")
    burst = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_per_source = models.JSONField(
        null=True,
        blank=True,
        default=None,
        help_text='a token bucket per source, e.g. {"rate": "6/minute", "burst": 3}',
    )
    comment = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="after this the rule is left out"
    )
    created = models.DateTimeField(auto_now_add=True)
    last_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["ruleset", "position", "id"]
        indexes = [models.Index(fields=["ruleset", "position"], name="rule_ruleset_position")]

    def __str__(self) -> str:
        return f"{self.ruleset} #{self.position} {self.action}"

    def clean(self) -> None:
        """Single-rule checks, by the compiler's own parser and wording (compiler.validate),
        so the API, forms and import accept and word the same things. References and
        address families are checked by the service, which resolves names."""
        row = {name: getattr(self, name) for name in RULE_COLUMNS if name not in _NOT_CHECKED}
        if not isinstance(row["expires_at"], datetime):  # unparsed: clean_fields says why
            row["expires_at"] = None
        raise_if(rule_errors(rule_dict(row, {})) or unknown_zones(self))


class RuleAddress(models.Model):
    """A source or destination of a rule: an address object, a group or a literal."""

    rule = models.ForeignKey("rules.Rule", on_delete=models.CASCADE, related_name="addresses")
    side = models.CharField(max_length=3, choices=Side.choices)
    index = models.PositiveIntegerField(default=0)
    address = models.ForeignKey(
        "rules.AddressObject",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rule_uses",
    )
    group = models.ForeignKey(
        "rules.AddressGroup",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rule_uses",
    )
    literal = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["rule", "side", "index", "id"]
        constraints = [
            models.CheckConstraint(
                name="ruleaddress_exactly_one",
                condition=(
                    models.Q(address__isnull=False, group__isnull=True, literal="")
                    | models.Q(address__isnull=True, group__isnull=False, literal="")
                    | (models.Q(address__isnull=True, group__isnull=True) & ~models.Q(literal=""))
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule}: {self.get_side_display()} {self.ref}"

    @property
    def ref(self) -> str:
        return (
            self.address.name
            if self.address_id
            else self.group.name
            if self.group_id
            else self.literal
        )


class RuleService(models.Model):
    """A service or service group a rule matches."""

    rule = models.ForeignKey("rules.Rule", on_delete=models.CASCADE, related_name="service_refs")
    index = models.PositiveIntegerField(default=0)
    service = models.ForeignKey(
        "rules.Service", null=True, blank=True, on_delete=models.PROTECT, related_name="rule_uses"
    )
    group = models.ForeignKey(
        "rules.ServiceGroup",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rule_uses",
    )

    class Meta:
        ordering = ["rule", "index", "id"]
        constraints = [
            models.CheckConstraint(
                name="ruleservice_exactly_one",
                condition=models.Q(service__isnull=False, group__isnull=True)
                | models.Q(service__isnull=True, group__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule}: {self.ref}"

    @property
    def ref(self) -> str:
        return self.service.name if self.service_id else self.group.name


class NatRule(models.Model):
    """A SNAT, DNAT or masquerade rule; NAT rules have their own order."""

    ruleset = models.ForeignKey("rules.RuleSet", on_delete=models.CASCADE, related_name="nat_rules")
    position = models.PositiveIntegerField(default=0)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    enabled = models.BooleanField(default=True)
    type = models.CharField(max_length=12, choices=NatType.choices)
    chain = models.CharField(
        max_length=12,
        choices=NatChain.choices,
        blank=True,
        help_text="dnat: prerouting (default) or output; snat/masquerade: postrouting",
    )
    in_interface = models.CharField(max_length=16, blank=True)
    out_interface = models.CharField(max_length=16, blank=True)
    in_zone = models.CharField(max_length=63, blank=True, help_text="a zone's name")
    out_zone = models.CharField(max_length=63, blank=True, help_text="a zone's name")
    protocol = models.CharField(max_length=8, choices=Protocol.choices, blank=True)
    dports = models.JSONField(default=list, blank=True)
    sources = models.JSONField(default=list, blank=True, help_text="address names or literals")
    destinations = models.JSONField(default=list, blank=True, help_text="address names or literals")
    to = models.CharField(
        max_length=120, blank=True, help_text="198.18.1.10:8080 (dnat) or 198.18.0.1 (snat)"
    )
    comment = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["ruleset", "position", "id"]
        verbose_name = "NAT rule"

    def __str__(self) -> str:
        return f"{self.ruleset} NAT #{self.position} {self.type}"

    def clean(self) -> None:
        """Single-NAT-rule checks, by the compiler's own parser and wording; named sources
        and destinations must exist and agree in family with the target."""
        raise_if(nat_errors(nat_dict(self), families=address_families) or unknown_zones(self))


def unknown_zones(rule: Rule | NatRule) -> dict[str, list[str]]:
    """The rule's `in_zone`/`out_zone` that name no zone (the parser checks only syntax)."""
    out: dict[str, list[str]] = {}
    for key in ("in_zone", "out_zone"):
        name = getattr(rule, key)
        if name and not Zone.objects.filter(name=name).exists():
            out[key] = [f"unknown zone {name!r}"]
    return out


def address_families(name: str) -> frozenset[int] | None:
    """IP versions the address or address group `name` holds (a group: all its members',
    nested groups included); None when no address or group has that name."""
    obj = AddressObject.objects.filter(name=name).first()
    if obj is not None:
        return frozenset(() if obj.family is None else (obj.family,))
    group = AddressGroup.objects.filter(name=name).first()
    if group is None:
        return None
    found: set[int] = set()
    seen: set[int] = set()
    stack = [group.pk]
    while stack:
        pk = stack.pop()
        if pk in seen:
            continue
        seen.add(pk)
        for m in AddressGroupMember.objects.filter(group_id=pk).select_related("address"):
            if m.subgroup_id:
                stack.append(m.subgroup_id)
            elif m.address_id and m.address.family is not None:
                found.add(m.address.family)
            elif m.literal and values.is_literal(m.literal):
                found.add(values.parse_address(m.literal).version)
    return frozenset(found)
