"""The probes editor's text form: one health probe a line.

    tcp 198.18.0.1:22 timeout=2        TCP connect ([2001:db8::1]:22 for IPv6)
    icmp 198.18.0.1                    one ICMP echo
    https://198.18.0.1/health 200      HTTP(S) GET expecting that status (200 if left out)

The lines become the probe dicts of POLICY-FORMAT.md; the compiler's parser then checks
them (compiler.validate.probe_errors), and its field errors are reported by line.
"""

from __future__ import annotations

import re

from django import forms

from compiler.validate import probe_errors

_TIMEOUT = re.compile(r"^timeout=(.+?)s?$")
_INDEX = re.compile(r"^probes\[(\d+)\]\.?(.*)$")


def _number(text: str) -> float | int | str:
    try:
        value = float(text)
    except ValueError:
        return text  # left for the compiler to refuse, with its wording
    return int(value) if value.is_integer() and "." not in text else value


def _host_port(text: str) -> tuple[str, int | str | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, None
    return host, (int(port) if port and port.isdecimal() else port)


def parse_line(line: str) -> dict:
    """One probe line as a probe dict; ValueError when its shape is unknown."""
    words = line.split()
    opts = {}
    while words and (timeout := _TIMEOUT.match(words[-1])):
        opts["timeout"] = _number(timeout.group(1))
        words.pop()
    if not words:
        raise ValueError("a probe is needed before timeout=")
    kind = words[0].lower()
    if kind in ("http", "https") and len(words) > 1 and "://" in words[1]:
        words = words[1:]
        kind = "url"
    if "://" in words[0]:
        if len(words) > 2:
            raise ValueError("expected: URL [STATUS] [timeout=SECONDS]")
        probe: dict = {"type": "http", "url": words[0]}
        if len(words) == 2:
            probe["expect_status"] = int(words[1]) if words[1].isdecimal() else words[1]
        return probe | opts
    if kind not in ("tcp", "icmp") or len(words) != 2:
        raise ValueError(
            "expected `tcp HOST:PORT`, `icmp HOST` or `URL [STATUS]`, each with an "
            "optional timeout=SECONDS"
        )
    host, port = _host_port(words[1])
    if kind == "icmp":
        return {"type": "icmp", "host": words[1].strip("[]")} | opts
    return {"type": "tcp", "host": host, "port": port} | opts


def format_probe(probe: dict) -> str:
    """A probe dict as its line (the inverse of `parse_line`)."""
    if probe.get("type") == "http":
        line = f"{probe.get('url')} {probe.get('expect_status', 200)}"
    elif probe.get("type") == "tcp":
        host = str(probe.get("host"))
        line = f"tcp {f'[{host}]' if ':' in host else host}:{probe.get('port')}"
    else:
        line = f"icmp {probe.get('host')}"
    if probe.get("timeout") is not None:
        line += f" timeout={probe['timeout']:g}"
    return line


def format_probes(probes: list | None) -> str:
    return "\n".join(format_probe(p) for p in probes or [] if isinstance(p, dict))


def parse_probes(text: str) -> list[dict]:
    """Every line of `text` as a checked probe; ValidationError naming the line and field."""
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    probes, errors = [], []
    for n, line in lines:
        try:
            probes.append(parse_line(line))
        except ValueError as exc:
            errors.append(f"line {n}: {exc}")
    if errors:
        raise forms.ValidationError(errors)
    for key, messages in probe_errors(probes).items():
        found = _INDEX.match(key)
        if found is None:
            errors.extend(messages)
            continue
        n = lines[int(found.group(1))][0]
        field = found.group(2)
        errors.extend(f"line {n}{f' ({field})' if field else ''}: {m}" for m in messages)
    if errors:
        raise forms.ValidationError(errors)
    return probes


class ProbesField(forms.CharField):
    """A textarea of probes, one a line; cleans to a list of probe dicts."""

    widget = forms.Textarea(
        attrs={"rows": 4, "class": "form-control form-control-sm font-monospace"}
    )

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            "one a line: tcp 198.18.0.1:22 timeout=2 · icmp 198.18.0.1 · "
            "https://198.18.0.1/health 200",
        )
        super().__init__(**kwargs)

    def to_python(self, value):
        return parse_probes(super().to_python(value) or "")

    def prepare_value(self, value):
        return format_probes(value) if isinstance(value, list) else value
