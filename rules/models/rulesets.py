"""Rule sets: ordered filter rules, NAT rules and assertions."""

from __future__ import annotations

import uuid

from django.db import models

from compiler import values
from rules.choices import NAT_CHAINS, Action, Chain, NatChain, NatType, Protocol, Side

from .base import NamedModel, check, raise_if


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
    in_interface = models.CharField(max_length=16, blank=True)
    out_interface = models.CharField(max_length=16, blank=True)
    states = models.JSONField(default=list, blank=True, help_text='conntrack states, e.g. ["new"]')
    log = models.BooleanField(default=False)
    log_prefix = models.CharField(max_length=29, blank=True)
    rate_limit = models.CharField(max_length=20, blank=True, help_text="e.g. 10/second")
    burst = models.PositiveIntegerField(null=True, blank=True)
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
        """Single-rule checks; references and address families are checked by the service."""
        errors: dict[str, list[str]] = {}
        dports = check(errors, "dports", values.parse_ports, self.dports) or []
        sports = check(errors, "sports", values.parse_ports, self.sports) or []
        if self.protocol:
            check(errors, "protocol", values.parse_protocol, self.protocol)
            if "dports" not in errors and "sports" not in errors:
                check(
                    errors,
                    "dports" if dports else "sports",
                    values.check_ports_allowed,
                    self.protocol,
                    dports,
                    sports,
                )
        elif dports or sports:
            errors.setdefault("protocol", []).append("ports need protocol tcp or udp")
        if self.icmp_type:
            check(errors, "icmp_type", values.parse_icmp_type, self.protocol or "", self.icmp_type)
        for field in ("in_interface", "out_interface"):
            if getattr(self, field):
                check(errors, field, values.parse_interface, getattr(self, field))
        if self.in_interface and self.chain == Chain.OUTPUT:
            errors.setdefault("in_interface", []).append("the output chain has no input interface")
        if self.out_interface and self.chain == Chain.INPUT:
            errors.setdefault("out_interface", []).append("the input chain has no output interface")
        if not isinstance(self.states, list):
            errors.setdefault("states", []).append("states must be a list")
        else:
            for state in self.states:
                check(
                    errors, "states", values.parse_choice, state, values.STATES, "conntrack state"
                )
        if self.rate_limit:
            check(errors, "rate_limit", values.parse_rate, self.rate_limit)
        elif self.burst:
            errors.setdefault("burst", []).append("a burst needs a rate limit")
        if self.log_prefix:
            check(errors, "log_prefix", values.parse_log_prefix, self.log_prefix)
        raise_if(errors)


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
        errors: dict[str, list[str]] = {}
        if self.chain and self.type in NAT_CHAINS and self.chain not in NAT_CHAINS[self.type]:
            errors["chain"] = [
                f"{self.type} rules go in {' or '.join(NAT_CHAINS[self.type])}, not {self.chain}"
            ]
        dports = check(errors, "dports", values.parse_ports, self.dports) or []
        if self.protocol:
            check(errors, "protocol", values.parse_protocol, self.protocol)
            if dports:
                check(errors, "dports", values.check_ports_allowed, self.protocol, dports, [])
        elif dports:
            errors.setdefault("protocol", []).append("ports need protocol tcp or udp")
        for field in ("in_interface", "out_interface"):
            if getattr(self, field):
                check(errors, field, values.parse_interface, getattr(self, field))
        if self.type == NatType.MASQUERADE:
            if self.to:
                errors.setdefault("to", []).append("masquerade takes no target address")
            if self.in_interface:
                errors.setdefault("in_interface", []).append(
                    "masquerade works on the output interface"
                )
        elif self.type in (NatType.SNAT, NatType.DNAT):
            if not self.to:
                errors.setdefault("to", []).append(f"{self.type} needs a target address")
            else:
                check(errors, "to", parse_nat_target, self.to)
            if self.type == NatType.DNAT and self.out_interface:
                errors.setdefault("out_interface", []).append(
                    "dnat happens before routing: use in_interface"
                )
            if self.type == NatType.SNAT and self.in_interface:
                errors.setdefault("in_interface", []).append(
                    "snat happens after routing: use out_interface"
                )
        raise_if(errors)


def parse_nat_target(value: str):
    """`198.18.1.10`, `198.18.1.10:8080`, `[2001:2::1]:8080` → (address, port or None)."""
    text = value.strip()
    port = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = values.parse_port(rest.lstrip(":"))[0]
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = values.parse_port(p)[0]
    else:
        host = text
    address = values.parse_address(host)
    if isinstance(address, values.AddressRange) or address.num_addresses != 1:
        raise ValueError(f"NAT target {value!r} must be a single address")
    return address, port
