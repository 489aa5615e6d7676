"""Pending device changes: which edits are held, how they fold together, who may review."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from core.audit.models import AuditEntry
from rules import importer, services
from rules.exporter import export_document
from rules.models import (
    Device,
    DeviceChangeStatus,
    DeviceGroup,
    DeviceGroupRuleSet,
    DeviceMembership,
    DeviceRuleSet,
    RuleSet,
)
from tests.rules.revisions.support import as_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def rulesets():
    return {
        "open": RuleSet.objects.create(name="open"),
        "guarded": RuleSet.objects.create(name="guarded", requires_approval=True),
    }


def device(name: str = "fw-1", *rulesets: RuleSet) -> Device:
    made = Device.objects.create(name=name, address="198.18.0.2")
    for i, rs in enumerate(rulesets):
        DeviceRuleSet.objects.create(device=made, ruleset=rs, position=i)
    return made


def update(user, dev: Device, data: dict | None = None, **refs):
    with as_user(user):
        return services.device_update(device=dev, data=data or {}, refs=refs)


def test_a_device_without_guarded_rule_sets_is_written_at_once(rulesets, users):
    dev = device("fw-1", rulesets["open"])
    assert update(users["operator"], dev, {"default_input": "accept"}, rulesets=[]) is None
    dev.refresh_from_db()
    assert dev.default_input == "accept" and not dev.ruleset_links.exists()
    assert not dev.pending_changes.exists()


def test_enforced_fields_are_held_and_the_rest_written(rulesets, users):
    dev = device("fw-1", rulesets["guarded"])
    change = update(
        users["operator"],
        dev,
        {"description": "edge", "default_input": "accept", "management_sources": ["198.19.0.1"]},
    )
    dev.refresh_from_db()
    assert dev.description == "edge"  # not enforced: written
    assert dev.default_input == "drop" and dev.management_sources == []
    assert change.before == {"default_input": "drop", "management_sources": []}
    assert change.after == {"default_input": "accept", "management_sources": ["198.19.0.1"]}
    assert services.pending_device_change(dev) == change
    # an edit of nothing enforced leaves the pending change as it is
    assert update(users["approver"], dev, {"description": "edge 2"}) is None
    change.refresh_from_db()
    assert change.status == DeviceChangeStatus.PENDING and change.authors == [users["operator"].pk]


def test_a_rule_set_through_a_group_or_being_added_needs_approval(rulesets, users):
    group = DeviceGroup.objects.create(name="dmz")
    DeviceGroupRuleSet.objects.create(group=group, ruleset=rulesets["guarded"])
    via_group = device("fw-1")
    DeviceMembership.objects.create(device=via_group, group=group)
    assert update(users["operator"], via_group, {"stateful": False}) is not None
    via_group.refresh_from_db()
    assert via_group.stateful is True
    # adding a guarded rule set to a device that had none is itself held
    plain = device("fw-2", rulesets["open"])
    held = update(users["operator"], plain, rulesets=["open", "guarded"])
    assert held.after == {"rulesets": ["open", "guarded"]}
    assert list(plain.ruleset_links.values_list("ruleset__name", flat=True)) == ["open"]
    # so is leaving a group whose rule set requires approval
    left = update(users["operator"], via_group, groups=[])
    assert left.after == {"stateful": False, "groups": []}


def test_a_newer_request_folds_the_older_in_and_all_authors_are_excluded(rulesets, users):
    dev = device("fw-1", rulesets["guarded"])
    first = update(users["operator"], dev, {"default_input": "accept"})
    second = update(users["approver"], dev, {"allow_loopback": False})
    first.refresh_from_db()
    assert first.status == DeviceChangeStatus.SUPERSEDED
    assert second.after == {"default_input": "accept", "allow_loopback": False}
    assert set(second.authors) == {users["operator"].pk, users["approver"].pk}
    for author in (users["operator"], users["approver"]):
        with pytest.raises(PermissionDenied, match="you cannot review"):
            services.device_change_approve(change=second, reviewer=author)
    with pytest.raises(PermissionDenied, match="only approvers"):
        services.device_change_approve(change=second, reviewer=users["viewer"])
    with pytest.raises(ValidationError):  # superseded
        services.device_change_approve(change=first, reviewer=users["admin"])
    services.device_change_approve(change=second, reviewer=users["admin"], comment="ok")
    dev.refresh_from_db()
    assert (dev.default_input, dev.allow_loopback) == ("accept", False)
    entry = AuditEntry.objects.get(action="device_change_approve")
    assert entry.user_id == users["admin"].pk and entry.after["status"] == "approved"


def test_putting_the_approved_settings_back_leaves_nothing_to_approve(rulesets, users):
    dev = device("fw-1", rulesets["guarded"])
    held = update(users["operator"], dev, {"default_input": "accept"})
    assert update(users["operator"], dev, {"default_input": "drop"}) is None
    held.refresh_from_db()
    assert held.status == DeviceChangeStatus.SUPERSEDED
    assert services.pending_device_change(dev) is None


def test_a_change_that_could_not_apply_is_refused_not_held(rulesets, users):
    dev = device("fw-1", rulesets["guarded"])
    with pytest.raises(ValidationError) as bad:
        update(users["operator"], dev, {"management_sources": ["198.19.0.300/15"]})
    assert "management_sources" in bad.value.message_dict
    with pytest.raises(ValidationError) as unknown:
        update(users["operator"], dev, rulesets=["guarded", "nope"])
    assert "rulesets" in unknown.value.message_dict
    assert not dev.pending_changes.exists()


def test_a_group_rule_set_change_touching_a_guarded_device_is_held(rulesets, users):
    group = DeviceGroup.objects.create(name="dmz")
    DeviceGroupRuleSet.objects.create(group=group, ruleset=rulesets["open"])
    member = device("fw-1", rulesets["guarded"])  # guarded through its own rule set
    DeviceMembership.objects.create(device=member, group=group)
    with as_user(users["operator"]):
        held = services.device_group_update(
            group=group, data={"description": "edge"}, refs={"rulesets": []}
        )
    group.refresh_from_db()
    assert group.description == "edge"
    assert list(group.ruleset_links.values_list("ruleset__name", flat=True)) == ["open"]
    assert (held.group, held.device) == (group, None)
    assert held.before == {"rulesets": ["open"]} and held.after == {"rulesets": []}
    with pytest.raises(PermissionDenied):
        services.device_change_approve(change=held, reviewer=users["operator"])
    services.device_change_approve(change=held, reviewer=users["approver"])
    assert not group.ruleset_links.exists()
    # a group none of whose devices or rule sets needs approval is written at once
    free = DeviceGroup.objects.create(name="lab")
    with as_user(users["operator"]):
        assert (
            services.device_group_update(group=free, data={}, refs={"rulesets": ["open"]}) is None
        )
    assert free.ruleset_links.get().ruleset == rulesets["open"]
    # adding a guarded rule set to it is held
    with as_user(users["operator"]):
        adding = services.device_group_update(
            group=free, data={}, refs={"rulesets": ["open", "guarded"]}
        )
    assert adding.after == {"rulesets": ["open", "guarded"]}


def test_an_import_cannot_change_what_a_guarded_device_enforces(rulesets, users):
    dev = device("fw-1", rulesets["guarded"])
    dev.management_sources = ["198.18.0.0/15"]
    dev.save()
    doc = export_document()
    [entry] = doc["devices"]
    entry["default_policy"] = {**entry["default_policy"], "input": "accept"}
    with pytest.raises(importer.ImportFailed) as refused:
        importer.import_document(doc)
    [error] = [e for e in refused.value.errors if str(e).startswith("devices[fw-1]")]
    assert "default_input" in str(error) and "require approval" in str(error)
    dev.refresh_from_db()
    assert dev.default_input == "drop"
    entry["default_policy"]["input"] = "drop"  # the approved settings import fine
    importer.import_document(doc)
