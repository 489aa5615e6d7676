"""The compiler's options for a device: the site-wide settings plus the device's own flags.

One function, so the deploy worker, the API, the dashboard and the validator never build
`CompileOptions` by hand (a preview that forgot `forward_fallthrough` showed a policy the
device would never get).
"""

from __future__ import annotations

from django.conf import settings

from compiler import CompileOptions
from rules.models import Device


def compile_options(device: Device | None = None) -> CompileOptions:
    """Options for `device` (None: a document compiled for no particular device)."""
    return CompileOptions(
        ipset_threshold=settings.RAMPART["IPSET_THRESHOLD"],
        forward_fallthrough=bool(device and device.forward_fallthrough),
    )
