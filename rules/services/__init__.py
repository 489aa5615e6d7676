"""Writes to the policy model. Views, serializers, forms and tasks call these; nothing else
changes policy rows, so every path (API, admin, UI, import) gets the same validation.

References (to addresses, groups, services) are given as names, exactly as in the policy
document; a string that reads as an address is a literal. One module per concern: `names`
(resolution), `objects` (named objects and groups), `group_members` (members as sets), `nat` (placing NAT rules), `rule_build`
(validating one rule), `rule_links` (its reference rows), `rule_writes` (single rules),
`bulk` (many rules at once), `rows` (the raw batch SQL those use), `device_refs` (the
ordered groups and rule sets of devices and device groups) and `device_changes` (what a
device enforces, and a device group's rule sets, held for approval where a rule set
requires it), `zones` (zones: a rename follows into the rules, a delete is refused while
rules use it).
"""

from rules.services.bulk import BulkError, BulkResult, rules_bulk
from rules.services.device_changes import (
    device_change_approve,
    device_change_reject,
    device_create,
    device_group_update,
    device_requires_approval,
    device_settings,
    device_update,
    group_requires_approval,
    pending_device_change,
)
from rules.services.device_refs import (
    device_group_set_rulesets,
    device_set_groups,
    device_set_rulesets,
)
from rules.services.group_members import MemberDiff, group_members_change, group_members_set
from rules.services.names import NameIndex
from rules.services.nat import nat_rule_create
from rules.services.objects import (
    ObjectInUse,
    address_group_set_members,
    object_delete,
    object_save,
    object_users,
    service_group_set_members,
)
from rules.services.rule_build import (
    RULE_SCALAR_FIELDS,
    RuleRefs,
    resolve_rule_refs,
    rule_build,
    rule_current_refs,
)
from rules.services.rule_links import audit_rule_refs, mark_created, save_links
from rules.services.rule_writes import (
    renumber,
    rule_create,
    rule_delete,
    rule_move,
    rule_update,
    rules_reorder,
)
from rules.services.zones import zone_delete, zone_save, zone_users

__all__ = [
    "zone_delete",
    "zone_save",
    "zone_users",
    "RULE_SCALAR_FIELDS",
    "BulkError",
    "BulkResult",
    "MemberDiff",
    "NameIndex",
    "ObjectInUse",
    "RuleRefs",
    "address_group_set_members",
    "audit_rule_refs",
    "device_change_approve",
    "device_change_reject",
    "device_create",
    "device_group_set_rulesets",
    "device_group_update",
    "device_requires_approval",
    "device_set_groups",
    "device_set_rulesets",
    "device_settings",
    "device_update",
    "group_members_change",
    "group_members_set",
    "group_requires_approval",
    "mark_created",
    "nat_rule_create",
    "object_delete",
    "object_save",
    "object_users",
    "pending_device_change",
    "renumber",
    "resolve_rule_refs",
    "rule_build",
    "rule_create",
    "rule_current_refs",
    "rule_delete",
    "rule_move",
    "rule_update",
    "rules_bulk",
    "rules_reorder",
    "save_links",
    "service_group_set_members",
]
