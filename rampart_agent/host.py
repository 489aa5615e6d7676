"""Facts about this host and health probes from it (no kernel state: see dataplane)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from rampart_agent.dataplane import Dataplane


def run_probe(probe: dict[str, Any]) -> bool:
    """One health probe from this host: TCP connect or one ICMP echo."""
    timeout = float(probe.get("timeout") or 2)
    host = probe["host"]
    if probe["type"] == "tcp":
        try:
            with socket.create_connection((host, int(probe["port"])), timeout=timeout):
                return True
        except OSError:
            return False
    argv = ["ping", "-n", "-c", "1", "-W", str(max(1, round(timeout))), host]
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout + 2).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def boot_id() -> str:
    """The kernel's id of this boot ("" where unknown): runtime records die with it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def gather_facts(dp: Dataplane) -> dict[str, Any]:
    """hostname, interfaces, kernel, iptables version and backend (sent at enrollment)."""
    try:
        interfaces = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        interfaces = []
    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "interfaces": interfaces,
        "kernel": os.uname().release,
    }
    try:
        facts.update(dp.facts())
    except (OSError, subprocess.SubprocessError) as exc:
        facts.update({"iptables_version": f"unknown ({exc})", "backend": dp.backend})
    return facts
