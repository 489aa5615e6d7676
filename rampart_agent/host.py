"""Facts about this host and health probes from it (no kernel state: see dataplane)."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rampart_agent.dataplane import Dataplane


def probe_label(probe: dict[str, Any]) -> str:
    """How a probe is named in answers and logs: `tcp 198.18.0.1:22`, `icmp 198.18.0.1`,
    `http https://198.18.0.1/health 200`."""
    if probe.get("type") == "http":
        return f"http {probe.get('url')} {probe.get('expect_status', 200)}"
    port = f":{probe.get('port')}" if probe.get("type") == "tcp" else ""
    return f"{probe.get('type')} {probe.get('host')}{port}"


def _http_probe(url: str, expect: int, timeout: float) -> bool:
    """GET `url` (redirects not followed) and compare the status. The certificate is not
    checked: the probe asks whether the service answers, not who it is."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", target, headers={"User-Agent": "rampart-agent-probe"})
        return conn.getresponse().status == expect
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def run_probe(probe: dict[str, Any]) -> bool:
    """One health probe from this host: TCP connect, one ICMP echo, or an HTTP(S) GET."""
    timeout = float(probe.get("timeout") or 2)
    if probe["type"] == "http":
        return _http_probe(probe["url"], int(probe.get("expect_status", 200)), timeout)
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
