"""The checks on an apply request (POST /v1/apply, or the local break-glass file)."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from rampart_agent.errors import AgentError

MAX_CONFIRM_TIMEOUT = 86400  # seconds
MAX_PROBE_TIMEOUT = 60  # seconds, per probe (the apply's answer waits for the probes)


def parse_apply(
    request: Any, local: bool
) -> tuple[dict[str, Any], int | None, str, float | None, list[dict[str, Any]]]:
    """Validate an apply request: (bundle, version, deployment, confirm timeout, probes).

    A bare bundle is accepted for the local break-glass."""
    if not isinstance(request, dict):
        raise AgentError(400, "body must be a JSON object")
    if local and "bundle" not in request and "format" in request:
        request = {"bundle": request}
    bundle = request.get("bundle")
    if not isinstance(bundle, dict):
        raise AgentError(400, "missing 'bundle' object")
    version = request.get("version")
    if version is None and not local:
        raise AgentError(400, "missing 'version'")
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or version < 1
    ):
        raise AgentError(400, "'version' must be a positive integer")
    deployment = request.get("deployment") or ""
    if not isinstance(deployment, str):
        raise AgentError(400, "'deployment' must be a string")
    timeout = request.get("confirm_timeout")
    if timeout is not None and not _seconds(timeout, 0, MAX_CONFIRM_TIMEOUT):
        raise AgentError(400, "'confirm_timeout' must be 0..86400 seconds")
    probes = request.get("probes") or []
    if not isinstance(probes, list):
        raise AgentError(400, "'probes' must be a list")
    for i, probe in enumerate(probes):
        _check_probe(probe, f"probes[{i}]")
    return bundle, version, deployment, timeout, probes


def _seconds(value: Any, low: float, high: float, *, open_low: bool = False) -> bool:
    """A finite number of seconds in low..high (low excluded with `open_low`)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return (value > low if open_low else value >= low) and value <= high


def _check_probe(probe: Any, where: str) -> None:
    """Every field a probe's run reads is checked here, before the kernel is touched: a
    probe that cannot run must refuse the apply, not fail it half-way."""
    if not isinstance(probe, dict):
        raise AgentError(400, f"{where} must be an object", field=where)
    if probe.get("type") not in ("tcp", "icmp", "http"):
        raise AgentError(400, f"{where}.type must be tcp, icmp or http", field=f"{where}.type")
    if probe["type"] == "http":
        _check_http_probe(probe, where)
    else:
        _check_host_probe(probe, where)
    timeout = probe.get("timeout")
    if timeout is not None and not _seconds(timeout, 0, MAX_PROBE_TIMEOUT, open_low=True):
        raise AgentError(
            400,
            f"{where}.timeout must be a number of seconds in (0, {MAX_PROBE_TIMEOUT}]",
            field=f"{where}.timeout",
        )


def _check_http_probe(probe: dict[str, Any], where: str) -> None:
    url = probe.get("url")
    ok = (
        isinstance(url, str)
        and len(url) <= 2000
        and not any(c.isspace() or ord(c) < 32 for c in url)
    )
    if ok:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:
            ok = False
    if not ok:
        raise AgentError(400, f"{where}.url must be an http(s) URL", field=f"{where}.url")
    status = probe.get("expect_status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise AgentError(
            400, f"{where}.expect_status must be 100..599", field=f"{where}.expect_status"
        )


def _check_host_probe(probe: dict[str, Any], where: str) -> None:
    host = probe.get("host")
    if not isinstance(host, str) or not host or len(host) > 253 or host.startswith("-"):
        raise AgentError(400, f"{where}.host must be a host name or address", field=f"{where}.host")
    port = probe.get("port")
    if probe["type"] == "tcp" and not (
        isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
    ):
        raise AgentError(
            400, f"{where}.port: a tcp probe needs a port 1..65535", field=f"{where}.port"
        )
