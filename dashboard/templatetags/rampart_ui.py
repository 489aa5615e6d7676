"""Small template helpers: role checks and status colours that mean the same everywhere."""

from __future__ import annotations

import json

from django import template
from django.utils.html import format_html

from core.accounts import roles
from dashboard.selectors.revisions import pending_approval_count

register = template.Library()

ROLE_SETS = {
    "edit": roles.CAN_EDIT,
    "deploy": roles.CAN_DEPLOY,
    "approve": roles.CAN_APPROVE,
    "admin": roles.CAN_ADMINISTER,
}

# One meaning per colour: green = good/accepted, red = failed/dropped, amber = needs
# attention (drift, pending, reject), grey = unknown/idle, blue = in progress.
STATUS_CLASSES = {
    "online": "success",
    "succeeded": "success",
    "success": "success",
    "confirmed": "success",
    "applied": "success",
    "accept": "success",
    "approved": "success",
    "ok": "success",
    "done": "success",
    "unchanged": "success",
    "halted": "danger",
    "skipped": "secondary",
    "superseded": "secondary",
    "compiling": "primary",
    "pushing": "primary",
    "draft": "info",
    "offline": "danger",
    "failed": "danger",
    "error": "danger",
    "drop": "danger",
    "rolled_back": "danger",
    "rejected": "danger",
    "timeout": "danger",
    "drifted": "warning",
    "pending": "warning",
    "reject": "warning",
    "warning": "warning",
    "waiting": "warning",
    "shadowed": "warning",
    "partial": "warning",
    "running": "primary",
    "applying": "primary",
    "in_progress": "primary",
    "queued": "info",
    "unknown": "secondary",
    "never seen": "secondary",
    "cancelled": "secondary",
    "disabled": "secondary",
}


@register.filter
def can(user, what: str) -> bool:
    """`{% if user|can:"edit" %}`: does the user hold a role allowed to `what`?"""
    return roles.has_any(user, ROLE_SETS[what])


@register.simple_tag
def status_badge(value, label: str | None = None):
    """A coloured badge for a status word; unknown words stay neutral grey."""
    key = str(value or "unknown").lower()
    css = STATUS_CLASSES.get(key, "secondary")
    return format_html(
        '<span class="badge rounded-pill text-bg-{} status-{}">{}</span>',
        css,
        key.replace(" ", "-"),
        label or value or "unknown",
    )


@register.filter
def status_class(value) -> str:
    return STATUS_CLASSES.get(str(value or "unknown").lower(), "secondary")


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced (pagination, sorting links)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.simple_tag
def pending_approvals() -> int:
    """Pending changes waiting for an approver (shown in the navigation)."""
    return pending_approval_count()


@register.filter
def rule_summary(rule: dict) -> str:
    """A rule in document form, as one line: `accept input office → web-servers web`."""
    if not isinstance(rule, dict):
        return str(rule)
    neg = {"sources": rule.get("sources_negate"), "destinations": rule.get("destinations_negate")}

    def side(key: str) -> str:
        names = ",".join(rule.get(key) or []) or "any"
        return f"!{names}" if neg[key] else names

    match = ",".join(rule.get("services") or [])
    if rule.get("protocol"):
        match = rule["protocol"] + (
            " " + ",".join(rule.get("dports") or []) if rule.get("dports") else ""
        )
    text = f"{rule.get('action', '?')} {rule.get('chain', 'input')} {side('sources')} → {side('destinations')}"
    text += f" {match or 'any'}"
    if rule.get("enabled") is False:
        text += " (disabled)"
    if rule.get("comment"):
        text += f" — {rule['comment']}"
    return text


@register.filter
def get_key(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def split_words(text: str) -> list[str]:
    return str(text).split()


@register.filter
def pretty(value) -> str:
    """Facts as an admin reads them: lists joined, mappings as compact JSON."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else str(value)
