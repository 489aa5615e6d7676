"""`{% audit_required as need %}`: whether changes need a reason / ticket (need.reason, need.ticket)."""

from __future__ import annotations

from django import template

from dashboard.forms.audit import audit_requirements

register = template.Library()


@register.simple_tag
def audit_required() -> dict[str, bool]:
    return audit_requirements()
