"""Rolling a rule set back to a revision: restore its rows (and any object it uses that no
longer exists) through the services, then record a revision carrying exactly the old snapshot.

Not re-exported by `rules.revisions`: it writes through `rules.services`, which itself
records revisions through `rules.revisions.capture`; import it from here.
"""

from __future__ import annotations

import copy

from django.db import transaction

from core.audit.choices import AuditAction
from core.audit.services import record
from rules.models import (
    AddressGroup,
    AddressObject,
    NatRule,
    RuleSet,
    RuleSetRevision,
    Service,
    ServiceGroup,
)
from rules.revisions.capture import captures_suspended, new_revision
from rules.revisions.member_sets import revision_snapshot
from rules.revisions.snapshots import OBJECT_KINDS
from rules.selectors import policy_dict
from rules.services import (
    NameIndex,
    address_group_set_members,
    object_save,
    rule_build,
    save_links,
    service_group_set_members,
)

_NAT_FIELDS = (
    "in_interface",
    "out_interface",
    "protocol",
    "dports",
    "sources",
    "destinations",
    "to",
    "comment",
)


def _rule_data(rule: dict) -> dict:
    data = {k: v for k, v in rule.items() if k != "id"}
    data["uuid"] = rule["id"]
    return data


def _restore_leaves(snapshot: dict, current_doc: dict[str, dict]) -> list[str]:
    """Recreate the snapshot's missing addresses and services; name those that now differ."""
    conflicts: list[str] = []
    for o in snapshot.get("addresses", []):
        if o["name"] not in current_doc["addresses"]:
            object_save(
                AddressObject(
                    name=o["name"], value=o["value"], description=o.get("description", "")
                )
            )
        elif current_doc["addresses"][o["name"]] != o:
            conflicts.append(f"address {o['name']}")
    for o in snapshot.get("services", []):
        if o["name"] not in current_doc["services"]:
            object_save(
                Service(
                    name=o["name"],
                    protocol=o["protocol"],
                    ports=o.get("ports", []),
                    source_ports=o.get("source_ports", []),
                    icmp_type=str(o.get("icmp_type", "") or ""),
                    description=o.get("description", ""),
                )
            )
        elif current_doc["services"][o["name"]] != o:
            conflicts.append(f"service {o['name']}")
    return conflicts


def _restore_groups(snapshot: dict, current_doc: dict[str, dict]) -> list[str]:
    """Recreate the snapshot's missing groups (then their members); name those that differ."""
    conflicts: list[str] = []
    for kind, model, set_members in (
        ("address_groups", AddressGroup, address_group_set_members),
        ("service_groups", ServiceGroup, service_group_set_members),
    ):
        created = []
        for o in snapshot.get(kind, []):
            if o["name"] not in current_doc[kind]:
                group = object_save(model(name=o["name"], description=o.get("description", "")))
                created.append((group, o))
            elif current_doc[kind][o["name"]] != o:
                conflicts.append(f"{model._meta.verbose_name} {o['name']}")
        for group, o in created:
            set_members(group=group, members=o.get("members", []))
    return conflicts


def _restore_objects(snapshot: dict) -> list[str]:
    """Recreate referenced objects that no longer exist; name those that now differ (they are
    shared with other rule sets, so they are left as they are)."""
    current_doc = {
        kind: {o["name"]: o for o in policy_dict(rulesets=[]).get(kind, [])}
        for kind in OBJECT_KINDS
    }
    return _restore_leaves(snapshot, current_doc) + _restore_groups(snapshot, current_doc)


def _restore_ruleset(ruleset: RuleSet, doc: dict) -> None:
    ruleset.description = doc.get("description", "")
    ruleset.assertions = doc.get("assertions", [])
    object_save(ruleset)
    for rule in ruleset.rules.all():  # one by one: each delete is audited by the signals
        rule.delete()
    for nat in ruleset.nat_rules.all():
        nat.delete()
    index = NameIndex.load()
    built = []
    for position, item in enumerate(doc.get("rules", []), start=1):
        rule, links = rule_build(ruleset=ruleset, data=_rule_data(item), index=index)
        rule.position = position
        rule.save()
        built.append((rule, links))
    save_links(built)
    for position, item in enumerate(doc.get("nat", []), start=1):
        nat = NatRule(
            ruleset=ruleset,
            position=position,
            uuid=item["id"],
            type=item["type"],
            enabled=item.get("enabled", True),
            **{
                k: item.get(k, [] if k in ("dports", "sources", "destinations") else "")
                for k in _NAT_FIELDS
            },
        )
        nat.full_clean(exclude=["ruleset"])
        nat.save()


@transaction.atomic
def revision_rollback(
    *, revision: RuleSetRevision, author=None, message: str = ""
) -> RuleSetRevision:
    """Make `revision`'s content current again: restore the rule set's rows and record a new
    revision carrying exactly the old snapshot (pending again if the set needs approval)."""
    ruleset = RuleSet.objects.select_for_update().get(pk=revision.ruleset_id)
    revision = RuleSetRevision.objects.get(pk=revision.pk)
    latest = ruleset.revisions.order_by("-number").first()
    with captures_suspended():
        snapshot = revision_snapshot(revision)
        conflicts = _restore_objects(snapshot)
        _restore_ruleset(ruleset, snapshot["ruleset"])
    message = message or f"roll back to r{revision.number}"
    new = new_revision(
        ruleset=ruleset,
        snapshot=copy.deepcopy(snapshot),
        digest=revision.hash,
        author=author,
        message=message,
        parent=latest,
    )
    record(
        AuditAction.REVISION_ROLLBACK,
        new,
        before={"revision": latest.number if latest else None},
        after={"revision": new.number, "content_of": revision.number, "hash": revision.hash},
        extra={"conflicts": conflicts} if conflicts else None,
        user=author,
    )
    new.conflicts = conflicts
    return new
