"""The rule table's cells, built as safe HTML from a `RuleRow`.

Filters in Python (format_html) instead of template loops and ifs keep a 500-row page
several times cheaper to render; the selectors only hand over the row's data.
"""

from __future__ import annotations

from django import template
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince, timeuntil

from dashboard.selectors.rulesets import EXPIRY_WINDOW, RuleRow

register = template.Library()

ANY = mark_safe('<span class="any">any</span>')
NOT = mark_safe('<span class="neg" title="not">!</span>')


def _refs(names: list[str], negate: bool, css: str = "ref") -> SafeString:
    neg = NOT if negate else ""
    if not names:
        return format_html("{}{}", neg, ANY)
    return format_html(
        "{}{}",
        neg,
        format_html_join("", '<span class="{}">{}</span>', ((css, n) for n in names)),
    )


@register.filter
def rule_css(row: RuleRow) -> str:
    """The row's classes: disabled, expired and one per finding kind."""
    classes = [] if row.rule.enabled else ["rule-disabled"]
    if row.expired:
        classes.append("rule-expired")
    classes += [f"finding-{f['kind']}" for f in row.findings]
    return " ".join(classes)


@register.filter
def source_cell(row: RuleRow) -> SafeString:
    return _refs(row.sources, row.rule.sources_negate)


@register.filter
def destination_cell(row: RuleRow) -> SafeString:
    return _refs(row.destinations, row.rule.destinations_negate)


@register.filter
def service_cell(row: RuleRow) -> SafeString:
    refs = format_html_join("", '<span class="ref svc">{}</span>', ((n,) for n in row.services))
    match = row.match
    if match:
        return format_html('{}<span class="font-monospace small match">{}</span>', refs, match)
    return refs if row.services else ANY


@register.filter
def iface_cell(row: RuleRow) -> str:
    r = row.rule
    parts = (
        ([f"in {r.in_interface}"] if r.in_interface else [])
        + ([f"out {r.out_interface}"] if r.out_interface else [])
        + ([f"in zone {r.in_zone}"] if r.in_zone else [])
        + ([f"out zone {r.out_zone}"] if r.out_zone else [])
        + ([",".join(r.states)] if r.states else [])
    )
    return " ".join(parts)


def _expiry_badge(row: RuleRow) -> SafeString:
    """Expired; "expires in …" within the overview's expiry window; else the date."""
    expires = row.rule.expires_at
    if row.expired:
        return format_html(
            '<span class="badge text-bg-secondary" title="{}">expired</span>',
            expires.isoformat(),
        )
    now = row.now or timezone.now()
    if expires - now <= EXPIRY_WINDOW:
        return format_html(
            '<span class="badge text-bg-warning" title="{}">expires in {}</span>',
            expires.isoformat(),
            timeuntil(expires, now, depth=1),
        )
    return format_html(
        '<span class="badge text-bg-light border" title="{}">expires {}</span>',
        expires.isoformat(),
        expires.strftime("%Y-%m-%d"),
    )


@register.filter
def options_cell(row: RuleRow) -> SafeString:
    r = row.rule
    out: list[str] = []
    if r.log:
        out.append(mark_safe('<span class="badge text-bg-info">log</span>'))
    if r.rate_limit:
        out.append(format_html('<span class="badge text-bg-light border">{}</span>', r.rate_limit))
    if r.rate_limit_per_source:
        out.append(
            format_html(
                '<span class="badge text-bg-light border">{} per source</span>',
                r.rate_limit_per_source.get("rate", ""),
            )
        )
    if r.expires_at:
        out.append(_expiry_badge(row))
    return mark_safe(" ".join(out))  # every part above is already escaped


@register.filter
def findings_cell(row: RuleRow) -> SafeString:
    return format_html_join(
        "",
        '<div class="finding finding-{} sev-{}" role="note" data-finding="{}">{} {}</div>',
        (
            (
                f["kind"],
                f["severity"],
                f["kind"],
                mark_safe("&#9888;" if f["severity"] == "warning" else "&#8505;"),
                f["message"],
            )
            for f in row.findings
        ),
    )


@register.filter
def hits_cell(row: RuleRow) -> SafeString:
    """Packets summed over devices, and the last hit on any of them ("never": counted, no
    hit yet; "—": no device counts the rule, e.g. not deployed)."""
    hits = row.hits
    if hits is None:
        return mark_safe(
            '<span class="text-body-secondary" title="no device counts this rule">—</span>'
        )
    last = hits["last_hit_at"]
    when = (
        format_html(
            '<span title="{}">{} ago</span>', last.isoformat(), timesince(last, row.now, depth=1)
        )
        if last
        else mark_safe('<span class="text-body-secondary">never</span>')
    )
    return format_html(
        '<span class="hits" data-packets="{}" title="{} bytes on {} device(s)">{}</span>'
        '<div class="small last-hit">{}</div>',
        hits["packets"],
        hits["bytes"],
        hits["devices"],
        hits["packets"],
        when,
    )
