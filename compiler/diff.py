"""What changes between two bundles: the text an admin reviews and the chains that differ.

Pure functions over bundle dicts (`Bundle.to_dict()`), so the API's
`GET /devices/{id}/diff/` and the dashboard's preview show the same diff.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

_PARTS = (
    ("ipsets", "ipset"),
    ("iptables_v4", "iptables (IPv4)"),
    ("iptables_v6", "ip6tables (IPv6)"),
)
_RULE = re.compile(r"^-A (\S+) ")


def bundle_text(bundle: Mapping[str, Any]) -> str:
    """The parts of a bundle a human reviews: ipsets, then iptables-restore per family."""
    parts = []
    for key, title in _PARTS:
        if bundle.get(key):
            parts.append(f"# --- {title}\n{bundle[key].rstrip()}\n")
    return "\n".join(parts)


def unified_diff(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], old_label: str, new_label: str
) -> str:
    """A unified diff of the reviewable text (`old` None: everything is new)."""
    before = bundle_text(old).splitlines(True) if old is not None else []
    return "".join(
        difflib.unified_diff(before, bundle_text(new).splitlines(True), old_label, new_label)
    )


def chain_rules(bundle: Mapping[str, Any]) -> dict[str, list[str]]:
    """`<family>/<table>/<chain>` -> the chain's rule lines, from the restore texts."""
    out: dict[str, list[str]] = {}
    for key, family in (("iptables_v4", "v4"), ("iptables_v6", "v6")):
        table = ""
        for line in (bundle.get(key) or "").splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif (match := _RULE.match(line)) is not None:
                out.setdefault(f"{family}/{table}/{match.group(1)}", []).append(line)
    return out


def chain_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Per chain: which were added or removed, and a unified diff of each changed one."""
    before = chain_rules(old) if old is not None else {}
    after = chain_rules(new)
    changed = {
        name: "".join(
            difflib.unified_diff(
                [f"{line}\n" for line in before[name]],
                [f"{line}\n" for line in after[name]],
                f"deployed {name}",
                f"candidate {name}",
            )
        )
        for name in sorted(before.keys() & after.keys())
        if before[name] != after[name]
    }
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": changed,
    }
