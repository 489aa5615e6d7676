"""Building a rule from field values and reference names, without saving: the one validation
every rule write goes through (single edits, bulk edits, import, rollback)."""

from __future__ import annotations

import uuid as uuid_lib
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from rules.choices import Side
from rules.models import (
    AddressGroup,
    AddressObject,
    Rule,
    RuleAddress,
    RuleService,
    RuleSet,
    Service,
)
from rules.services.names import NameIndex

RULE_SCALAR_FIELDS = (
    "enabled",
    "chain",
    "action",
    "sources_negate",
    "destinations_negate",
    "protocol",
    "dports",
    "sports",
    "icmp_type",
    "in_interface",
    "out_interface",
    "in_zone",
    "out_zone",
    "states",
    "log",
    "log_prefix",
    "rate_limit",
    "burst",
    "comment",
    "expires_at",
    "reject_with",
    "rate_limit_per_source",
)


@dataclass
class RuleRefs:
    sources: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)


def resolve_rule_refs(
    rule: Rule, refs: RuleRefs, index: NameIndex
) -> tuple[list[RuleAddress], list[RuleService]]:
    """Resolve a rule's names into link rows (unsaved); field-keyed ValidationError on problems."""
    errors: dict[str, list[str]] = {}
    addresses: list[RuleAddress] = []
    fams: dict[str, set[int]] = {}
    for side, key in ((Side.SOURCE, "sources"), (Side.DESTINATION, "destinations")):
        side_fams: set[int] = set()
        refs_list = getattr(refs, key)
        if not isinstance(refs_list, list):
            errors[key] = ["must be a list of address names or literals"]
            continue
        for i, ref in enumerate(refs_list):
            try:
                target = index.address_ref(ref)
                side_fams |= index.families(target)
            except ValueError as exc:
                errors.setdefault(key, []).append(f"[{i}] {exc}")
                continue
            link = RuleAddress(rule=rule, side=side, index=i)
            if isinstance(target, AddressObject):
                link.address = target
            elif isinstance(target, AddressGroup):
                link.group = target
            else:
                link.literal = target
            addresses.append(link)
        fams[key] = side_fams
    src, dst = fams.get("sources", set()), fams.get("destinations", set())
    if src and dst and not (src & dst):
        errors.setdefault("destinations", []).append(
            f"sources are IPv{'/'.join(map(str, sorted(src)))} only but destinations are "
            f"IPv{'/'.join(map(str, sorted(dst)))} only: no packet can match"
        )
    services: list[RuleService] = []
    if not isinstance(refs.services, list):
        errors["services"] = ["must be a list of service names"]
    else:
        for i, ref in enumerate(refs.services):
            try:
                target = index.service_ref(ref)
            except ValueError as exc:
                errors.setdefault("services", []).append(f"[{i}] {exc}")
                continue
            if isinstance(target, Service):
                services.append(RuleService(rule=rule, index=i, service=target))
            else:
                services.append(RuleService(rule=rule, index=i, group=target))
    if refs.services and (rule.protocol or rule.dports or rule.sports):
        errors.setdefault("services", []).append(
            "give either services or a literal protocol/ports, not both"
        )
    if errors:
        raise ValidationError(errors)
    return addresses, services


def rule_current_refs(rule: Rule) -> RuleRefs:
    """A saved rule's references as names (uses prefetched links when present)."""
    cache = getattr(rule, "_prefetched_objects_cache", {})
    addresses = (
        rule.addresses.all()
        if "addresses" in cache
        else rule.addresses.select_related("address", "group")
    )
    services = (
        rule.service_refs.all()
        if "service_refs" in cache
        else rule.service_refs.select_related("service", "group")
    )
    current = RuleRefs()
    for link in addresses:
        (current.sources if link.side == Side.SOURCE else current.destinations).append(link.ref)
    current.services = [link.ref for link in services]
    return current


def rule_build(
    *,
    ruleset: RuleSet,
    data: dict,
    index: NameIndex,
    rule: Rule | None = None,
    current: RuleRefs | None = None,
):
    """Validate one rule's data (scalars + references) without saving; returns (rule, links).

    `current` (the saved rule's references) spares a query per rule in bulk updates; it is
    loaded only when `data` leaves some reference list out.
    """
    rule = rule or Rule(ruleset=ruleset)
    unknown = (
        set(data)
        - set(RULE_SCALAR_FIELDS)
        - {"sources", "destinations", "services", "position", "uuid", "id"}
    )
    if unknown:
        raise ValidationError({k: ["unknown field"] for k in sorted(unknown)})
    for name in RULE_SCALAR_FIELDS:
        if name in data:
            setattr(rule, name, data[name])
    errors: dict[str, list[str]] = {}
    given_uuid = data.get("uuid") or data.get("id")
    if given_uuid:
        try:
            rule.uuid = uuid_lib.UUID(str(given_uuid))
        except ValueError:
            errors["uuid"] = [f"{given_uuid!r} is not a UUID"]
    try:
        rule.full_clean(exclude=["ruleset", "position", "uuid"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if current is None:
        needs_current = rule.pk and not {"sources", "destinations", "services"} <= set(data)
        current = rule_current_refs(rule) if needs_current else RuleRefs()
    refs = RuleRefs(
        sources=data.get("sources", current.sources),
        destinations=data.get("destinations", current.destinations),
        services=data.get("services", current.services),
    )
    links: tuple[list, list] = ([], [])
    try:
        links = resolve_rule_refs(rule, refs, index)
    except ValidationError as exc:
        for k, v in exc.message_dict.items():
            errors.setdefault(k, []).extend(v)
    if errors:
        raise ValidationError(errors)
    return rule, links
