"""Dataplanes: the only code that touches (or pretends to touch) the kernel.

`Dataplane` (base.py) is the interface; `IptablesDataplane` (iptables.py) the real one,
reading with `iptables-save` (save.py) or python-iptables (iptc_reader.py);
`NftDataplane` (nft.py) the native nftables one (one `nft -f` per apply);
`RecordingDataplane` (recording.py) the in-memory one.
"""

from __future__ import annotations

import logging
import os

from rampart_agent.dataplane.base import (
    Dataplane,
    DataplaneError,
    LiveFamily,
    LiveRule,
    LiveTable,
    PendingRestore,
)
from rampart_agent.dataplane.iptables import IptablesDataplane, detect_backend
from rampart_agent.dataplane.nft import NftDataplane
from rampart_agent.dataplane.recording import RecordingDataplane
from rampart_agent.dataplane.save import parse_save
from rampart_agent.dataplane.select import Choice, choose
from rampart_agent.dataplane.xtables_lock import XtablesLockBusy
from rampart_agent.runner import Runner

log = logging.getLogger("rampart.agent")


def open_dataplane(kind: str, runner: Runner | None = None, held: str | None = None) -> Dataplane:
    """'recording', 'legacy', 'nft' (iptables-nft), 'nft-native' (nftables, nft.py),
    'iptables' (the host's iptables backend, detected) or 'auto' (select.py: nft-native
    where the host runs nftables; `held`: what the confirmed bundle was applied with)."""
    if kind == "recording":
        return RecordingDataplane()
    if kind == "auto":
        choice = choose(runner or Runner(), held)
        log.info("dataplane %s (auto: %s)", choice.kind, choice.reason)
        kind = choice.kind
    elif kind == "iptables":
        kind = os.environ.get("RAMPART_AGENT_BACKEND") or detect_backend(runner)
    if kind == "nft-native":
        return NftDataplane(runner)
    return IptablesDataplane(kind, runner)


__all__ = [
    "Choice",
    "Dataplane",
    "DataplaneError",
    "IptablesDataplane",
    "LiveFamily",
    "LiveRule",
    "LiveTable",
    "NftDataplane",
    "PendingRestore",
    "RecordingDataplane",
    "XtablesLockBusy",
    "choose",
    "detect_backend",
    "open_dataplane",
    "parse_save",
]
