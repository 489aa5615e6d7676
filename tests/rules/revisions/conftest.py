"""Fixtures of the revision tests: a small policy, and the same rule set under approval."""

from __future__ import annotations

import pytest

from rules import services
from rules.models import AddressGroup, AddressObject, RuleSet, Service


@pytest.fixture
def policy():
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    services.object_save(AddressObject(name="office", value="198.18.0.0/24"))
    group = services.object_save(AddressGroup(name="web"))
    services.address_group_set_members(group=group, members=["web-1"])
    services.object_save(Service(name="https", protocol="tcp", ports=["443"]))
    services.object_save(Service(name="dns", protocol="udp", ports=["53"]))
    rs = services.object_save(RuleSet(name="edge"))
    return rs


@pytest.fixture
def guarded(policy, users, make_user):
    policy.requires_approval = True
    services.object_save(policy)
    make_user("approver2", "approver")
    return policy
