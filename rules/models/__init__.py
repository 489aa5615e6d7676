from .objects import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    Service,
    ServiceGroup,
    ServiceGroupMember,
)
from .rulesets import NatRule, Rule, RuleAddress, RuleService, RuleSet

__all__ = [
    "AddressGroup", "AddressGroupMember", "AddressObject", "NatRule", "Rule", "RuleAddress",
    "RuleService", "RuleSet", "Service", "ServiceGroup", "ServiceGroupMember",
]
