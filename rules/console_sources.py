"""Do a device's management sources cover the console? (POLICY-FORMAT.md step 4)

The anti-lockout step accepts the agent port and ssh only from `management_sources`: when
they leave out the address the console reaches the agent from, the first deploy cuts the
console off (only the confirm's rollback saves it). The console's addresses are the
`RAMPART_CONSOLE_SOURCES` setting (CIDRs) or, without it, the address the agent last saw
the console's connection come from (`Device.console_seen_from`, from its status answer).
Management sources may name address objects and groups: they are resolved here.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError

from compiler import nets as N
from core.accounts import roles
from rules.models import AddressGroup, AddressObject, Device

FIELD = "management_sources"
Interval = tuple[int, int, int]  # family, first, last


def configured_sources() -> list[str]:
    """`RAMPART_CONSOLE_SOURCES` as a list of CIDRs (empty when unset); a bad entry is a
    configuration error, never a source silently left out."""
    raw = settings.RAMPART.get("CONSOLE_SOURCES") or []
    if isinstance(raw, str):
        raw = raw.split(",")
    out = [item.strip() for item in raw if item and item.strip()]
    for item in out:
        try:
            N.parse(item)
        except ValueError as exc:
            raise ImproperlyConfigured(f"RAMPART_CONSOLE_SOURCES: {item!r}: {exc}") from exc
    return out


def console_sources(device: Device) -> list[str]:
    """Where the console reaches `device` from: the setting, else what the agent saw."""
    configured = configured_sources()
    if configured:
        return configured
    return [device.console_seen_from] if device.console_seen_from else []


def _intervals(texts: Iterable[str]) -> list[Interval]:
    out: list[Interval] = []
    for text in texts:
        try:
            out.extend((n.version, n.first, n.last) for n in N.parse(text))
        except ValueError:
            continue  # a bad literal is Device.clean's to report
    return out


def _group_values(group: AddressGroup, seen: set[int]) -> list[str]:
    if group.pk in seen:
        return []
    seen.add(group.pk)
    out: list[str] = []
    for member in group.members.select_related("address", "subgroup"):
        if member.address_id:
            out.append(member.address.value)
        elif member.subgroup_id:
            out.extend(_group_values(member.subgroup, seen))
        elif member.literal:
            out.append(member.literal)
    return out


def resolve_sources(sources: Iterable[str]) -> list[str]:
    """Management sources as address literals: names of address objects and groups
    replaced by their values (members of groups, recursively); unknown names dropped."""
    items = [s for s in sources if isinstance(s, str)]
    objects = {o.name: o.value for o in AddressObject.objects.filter(name__in=items)}
    groups = {g.name: g for g in AddressGroup.objects.filter(name__in=items)}
    out: list[str] = []
    for item in items:
        if item in objects:
            out.append(objects[item])
        elif item in groups:
            out.extend(_group_values(groups[item], set()))
        else:
            out.append(item)
    return out


def _covered(needle: Interval, hay: list[Interval]) -> bool:
    """Whether the union of `hay` holds every address of `needle`."""
    family, first, last = needle
    for _, lo, hi in sorted(h for h in hay if h[0] == family):
        if lo > first:
            return False
        if hi >= first:
            first = hi + 1
            if first > last:
                return True
    return False


def uncovered(console: list[str], management: Iterable[str]) -> list[str]:
    """The console sources that `management` (resolved) does not cover."""
    have = _intervals(resolve_sources(management))
    return [c for c in console if not all(_covered(i, have) for i in _intervals([c]))]


def console_lockout_errors(device: Device) -> dict[str, list[str]]:
    """`{"management_sources": [why]}` when the device's management sources are empty or
    leave out the console's addresses; `{}` when they cover them or an admin allowed it."""
    if device.allow_console_lockout:
        return {}
    hint = " (an admin may allow it: allow_console_lockout with a reason)"
    if not device.management_sources:
        return {
            FIELD: [
                "must not be empty: without them the policy has no anti-lockout rule and "
                "can cut the console off" + hint
            ]
        }
    console = console_sources(device)
    missing = uncovered(console, device.management_sources)
    if missing:
        return {
            FIELD: [
                f"must cover the console's address{'es' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} (RAMPART_CONSOLE_SOURCES, or where the agent last saw "
                "the console from): otherwise a deploy cuts the console off" + hint
            ]
        }
    return {}


def device_write_check(*, device: Device, before: Device | None, user: object) -> None:
    """Refuse a device write (`device` holds the new values, `before` the stored row or
    None for a new one) that sets the lockout override without being an admin's, sets it
    without a reason, or leaves the console out of the management sources. Clears the
    reason when the override is off. Raises PermissionDenied or ValidationError."""
    was = (before.allow_console_lockout, before.console_lockout_reason) if before else (False, "")
    now = (device.allow_console_lockout, device.console_lockout_reason or "")
    if now != was:
        if not roles.has_any(user, roles.CAN_ADMINISTER):
            raise PermissionDenied(
                "only an admin may set allow_console_lockout or console_lockout_reason"
            )
        if device.allow_console_lockout and not now[1].strip():
            raise ValidationError(
                {"console_lockout_reason": ["say why the console may be locked out"]}
            )
    if not device.allow_console_lockout:
        device.console_lockout_reason = ""
    checked = before is None or (
        list(device.management_sources or []) != list(before.management_sources or [])
        or device.allow_console_lockout != before.allow_console_lockout
    )
    errors = console_lockout_errors(device) if checked else {}
    if errors:
        raise ValidationError(errors)
