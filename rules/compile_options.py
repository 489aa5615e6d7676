"""The compiler's options for a device: the site-wide settings plus the device's own flags.

One function, so the deploy worker, the API, the dashboard and the validator never build
`CompileOptions` by hand (a preview that forgot `forward_fallthrough` showed a policy the
device would never get).
"""

from __future__ import annotations

from django.conf import settings

from compiler import CompileOptions
from compiler.ir import SHAPES
from compiler.lower import DEFAULT_SET_TYPES
from rules.models import Device

NFT_SET_TYPES = frozenset(kind for kind, _ in SHAPES.values())
# nftables interval sets hold a port range as one element: no range is too wide for a set
NFT_RANGE_MAX = 65536


def compile_options(device: Device | None = None) -> CompileOptions:
    """Options for `device` (None: a document compiled for no particular device)."""
    set_types = device_set_types(device)
    return CompileOptions(
        ipset_threshold=settings.RAMPART["IPSET_THRESHOLD"],
        forward_fallthrough=bool(device and device.forward_fallthrough),
        set_compile=set_types is not None,
        set_types=set_types or DEFAULT_SET_TYPES,
        **({"set_range_max": NFT_RANGE_MAX} if set_types is NFT_SET_TYPES else {}),
    )


def device_set_types(device: Device | None) -> frozenset[str] | None:
    """The ipset types to set-compile for (docs/compiler.md, "Set-compiled rule runs"):
    those the device's agent reported in its facts (`ipset_types`, space-separated, probed
    on the device's kernel: rampart_agent/ipset_types.py); None (linear rules) for no device, an agent that predates set compilation (it
    reports none, and would refuse the bundle format) or `RAMPART["SET_COMPILE"]` off."""
    if device is None or not settings.RAMPART.get("SET_COMPILE", True):
        return None
    facts = device.facts if isinstance(device.facts, dict) else {}
    if facts.get("backend") == "nft-native":  # nftables sets have every shape (render_nft)
        return NFT_SET_TYPES
    types = facts.get("ipset_types")
    if isinstance(types, str):  # the agent's spelling: space-separated
        types = types.split()
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        return None
    return frozenset(types)
