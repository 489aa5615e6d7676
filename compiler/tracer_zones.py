"""Tracing by zone: "what happens to this packet arriving from zone lan?"

A zone is several interfaces, so the answer is one trace per interface of the zone (per
pair when both sides name a zone), in the zone's order. An exact interface is traced as
itself; a wildcard (`veth+`) by one representative name it matches (`veth0`; the prefix
itself when it is already as long as a name may be), which every interface of that
wildcard answers alike unless another rule names one of them exactly. `verdict` is the
common verdict, or `mixed` when the interfaces disagree.
"""

from __future__ import annotations

from .errors import FieldError, PacketError
from .tracer import Packet, Tracer

_IFNAMSIZ = 15  # longest interface name


def representative(pattern: str) -> str:
    """A concrete interface name `pattern` matches."""
    if not pattern.endswith("+"):
        return pattern
    prefix = pattern[:-1]
    return prefix + "0" if len(prefix) < _IFNAMSIZ else prefix


def trace_zones(tracer: Tracer, params: dict, zones: dict[str, tuple[str, ...]]) -> dict:
    """Trace the packet of `params` (Packet.from_params fields plus `in_zone`/`out_zone`)
    once per interface of its zones. PacketError names the fields in error (an unknown
    zone; a zone and an interface given for the same side)."""
    errors: list[FieldError] = []
    sides: dict[str, list[str | None]] = {}
    for side in ("in", "out"):
        zone = params.get(f"{side}_zone") or None
        iface = params.get(f"{side}_interface") or None
        if zone is None:
            sides[side] = [iface]
        elif zone not in zones:
            errors.append(FieldError(f"{side}_zone", f"unknown zone {zone!r}"))
        elif iface is not None:
            errors.append(
                FieldError(f"{side}_zone", f"give either {side}_interface or {side}_zone, not both")
            )
        else:
            sides[side] = [representative(p) for p in zones[zone]]
    base = {k: v for k, v in params.items() if k not in ("in_zone", "out_zone")}
    try:
        Packet.from_params(base)  # the other fields' errors, named once
    except PacketError as exc:
        errors.extend(exc.errors)
    if errors:
        raise PacketError(errors)
    traces = []
    for in_if in sides["in"]:
        for out_if in sides["out"]:
            packet = Packet.from_params({**base, "in_interface": in_if, "out_interface": out_if})
            traces.append(
                {"in_interface": in_if, "out_interface": out_if, **tracer.trace(packet).to_dict()}
            )
    verdicts = {t["verdict"] for t in traces}
    return {
        "in_zone": params.get("in_zone") or None,
        "out_zone": params.get("out_zone") or None,
        "verdict": verdicts.pop() if len(verdicts) == 1 else "mixed",
        "traces": traces,
    }
