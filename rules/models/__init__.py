from .device_changes import DeviceChangeStatus, PendingDeviceChange
from .devices import Device, DeviceGroup, DeviceGroupRuleSet, DeviceMembership, DeviceRuleSet
from .member_sets import MemberSet
from .objects import (
    AddressGroup,
    AddressGroupMember,
    AddressObject,
    Service,
    ServiceGroup,
    ServiceGroupMember,
)
from .revisions import RevisionStatus, RuleSetRevision
from .rulesets import NatRule, Rule, RuleAddress, RuleService, RuleSet
from .zones import Zone

__all__ = [
    "AddressGroup",
    "AddressGroupMember",
    "Device",
    "DeviceChangeStatus",
    "DeviceGroup",
    "DeviceGroupRuleSet",
    "DeviceMembership",
    "DeviceRuleSet",
    "AddressObject",
    "MemberSet",
    "NatRule",
    "PendingDeviceChange",
    "Rule",
    "RuleAddress",
    "RuleService",
    "RuleSet",
    "RuleSetRevision",
    "RevisionStatus",
    "Service",
    "ServiceGroup",
    "ServiceGroupMember",
    "Zone",
]
