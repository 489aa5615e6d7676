"""Parsing health probes (`devices[].probes`, `device_groups[].probes`).

A probe is what the agent runs after an apply and before it answers: a failed one rolls
the apply back. The forms accepted are exactly those the agent accepts
(docs/agent-protocol.md), with the timeout bounded tighter, since the console waits for
every probe of a device before it learns the apply's outcome.
"""

from __future__ import annotations

import ipaddress
import math
import re
from urllib.parse import urlsplit

from .model import Probe
from .parse_base import ParserBase

PROBE_TYPES = ("tcp", "icmp", "http")
MIN_TIMEOUT = 0.1  # seconds
MAX_TIMEOUT = 30.0
MAX_PROBES = 10  # per device (or group): the apply's answer waits for all of them
DEFAULT_TIMEOUT = 2.0  # the agent's, when a probe gives none
_KEYS = {
    "tcp": {"type", "host", "port", "timeout"},
    "icmp": {"type", "host", "timeout"},
    "http": {"type", "url", "expect_status", "timeout"},
}
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def check_host(value: object) -> str:
    """An IP address or a DNS name (never starting with `-`: it goes to ping's argv)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a host name or an IP address")
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _HOST_RE.match(text):
        raise ValueError(f"{text!r} is not a host name or an IP address")
    return text


def check_url(value: object) -> str:
    """An http:// or https:// URL with a host (no spaces, at most 2000 characters)."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be an http:// or https:// URL")
    if len(value) > 2000 or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("must be a URL without spaces, at most 2000 characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"{value!r} has no host")
    if port == 0:
        raise ValueError(f"{value!r}: port 0 is not a port")
    return value


def check_timeout(value: object) -> float | int:
    """Seconds, MIN_TIMEOUT..MAX_TIMEOUT."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not MIN_TIMEOUT <= value <= MAX_TIMEOUT
    ):
        raise ValueError(f"must be a number of seconds, {MIN_TIMEOUT:g}..{MAX_TIMEOUT:g}")
    return value


def _int_in(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"must be {what} {low}..{high}")
    return value


class ProbeParser(ParserBase):
    """Health probes, each checked field by field (`devices[web-1].probes[1].port`)."""

    def probes(self, item: dict, path: str) -> tuple[Probe, ...]:
        raw = item.get("probes")
        if raw is None:
            return ()
        where = f"{path}.probes" if path else "probes"
        if not isinstance(raw, list):
            self.err(where, "must be a list of probes")
            return ()
        if len(raw) > MAX_PROBES:
            self.err(where, f"at most {MAX_PROBES} probes")
        out = [self.probe(p, f"{where}[{i}]") for i, p in enumerate(raw)]
        return tuple(p for p in out if p is not None)

    def probe(self, data: object, path: str) -> Probe | None:
        """One probe, or None with its problems recorded."""
        if not isinstance(data, dict):
            self.err(path, "must be a mapping")
            return None
        kind = data.get("type")
        if kind not in PROBE_TYPES:
            self.err(f"{path}.type", f"must be one of {', '.join(PROBE_TYPES)}")
            return None
        n_errors = len(self.errors)
        self.mapping(data, path, _KEYS[kind], required=("url",) if kind == "http" else ("host",))
        host = port = url = status = timeout = None
        if kind == "http":
            if data.get("url") is not None:
                url = self.call(check_url, data["url"], f"{path}.url")
            status = data.get("expect_status", 200)
            self.call(
                lambda v: _int_in(v, 100, 599, "an HTTP status"), status, f"{path}.expect_status"
            )
        elif data.get("host") is not None:
            host = self.call(check_host, data["host"], f"{path}.host")
        if kind == "tcp":
            port = data.get("port")
            if port is None:
                self.err(f"{path}.port", "is required (a tcp probe connects to a port)")
            else:
                self.call(lambda v: _int_in(v, 1, 65535, "a port"), port, f"{path}.port")
        if data.get("timeout") is not None:
            timeout = self.call(check_timeout, data["timeout"], f"{path}.timeout")
        if len(self.errors) != n_errors:
            return None
        return Probe(kind, host, port, url, status, timeout)


def worst_case_seconds(probes: list[dict]) -> float:
    """How long the agent may spend on `probes` (in the apply request's form) before it
    answers: the console's read timeout of an apply adds it. A TCP probe waits its timeout
    once; ICMP `ping` its timeout and 2 s of process slack (host.run_probe); HTTP its
    timeout on the connect, the TLS handshake and the answer."""
    total = 0.0
    for probe in probes:
        timeout = float(probe.get("timeout") or DEFAULT_TIMEOUT)
        total += {"tcp": timeout, "icmp": timeout + 2}.get(str(probe.get("type")), 3 * timeout)
        total += 0.5
    return total
