"""Helpers shared by the revision tests."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

from core.audit.context import AuditContext, reset_context, set_context
from rules import services
from rules.models import Device, DeviceRuleSet, RuleSet, RuleSetRevision


@contextmanager
def as_user(user):
    """Act as `user`, as the middleware does for one of their requests."""
    token = set_context(
        AuditContext(channel="ui", request=SimpleNamespace(user=user), request_id="test")
    )
    try:
        yield
    finally:
        reset_context(token)


def latest(rs: RuleSet) -> RuleSetRevision:
    return rs.revisions.order_by("-number").first()


def edit_as(user, rs, **data):
    with as_user(user):
        return services.rule_create(ruleset=rs, data=data)


def device_with(*rulesets):
    device = Device.objects.create(name="fw-1", address="198.18.0.2")
    for i, rs in enumerate(rulesets):
        DeviceRuleSet.objects.create(device=device, ruleset=rs, position=i)
    return device
