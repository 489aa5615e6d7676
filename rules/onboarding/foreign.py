"""Chains and rules other software owns on a host (Docker, kube-proxy, ...).

Onboarding reports them and leaves them alone: they are rewritten by their owner at will,
and Rampart only ever touches its own `RPT-` chains (the Calico Felix rule: own what you
touch).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

OWNERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^DOCKER(-|$)"), "Docker"),
    (re.compile(r"^KUBE-"), "Kubernetes (kube-proxy/kubelet)"),
    (re.compile(r"^(cali-|felix-)"), "Calico"),
    (re.compile(r"^(CILIUM_|OLD_CILIUM_)"), "Cilium"),
    (re.compile(r"^FLANNEL"), "flannel"),
    (re.compile(r"^WEAVE"), "Weave Net"),
    (re.compile(r"^LIBVIRT_"), "libvirt"),
    (re.compile(r"^f2b-"), "fail2ban"),
    (re.compile(r"^RPT-"), "Rampart (already managed by an agent)"),
)
# Interfaces Docker creates: rules in the built-in chains that name them are Docker's.
DOCKER_INTERFACES = re.compile(r"^(docker\d+|docker_gwbridge|br-[0-9a-f]{12})\+?$")


# Chains other software creates for the administrator to fill: theirs, not the software's.
ADMIN_CHAINS = frozenset({"DOCKER-USER"})


def chain_owner(name: str) -> str | None:
    """Who owns a chain, or None if it looks like the administrator's own."""
    if name in ADMIN_CHAINS:
        return None
    for pattern, owner in OWNERS:
        if pattern.match(name):
            return owner
    return None


def rule_interface_owner(text: str) -> str | None:
    """Docker's rules in the built-in chains, recognised by the interfaces they name (also
    negated ones, which the translator cannot express)."""
    for name in re.findall(r"(?:^|\s)(?:-i|-o|--in-interface|--out-interface)\s+(\S+)", text):
        if DOCKER_INTERFACES.match(name):
            return "Docker"
    return None


def recognised_foreign_chains(chains: Iterable[str]) -> dict[str, str]:
    """The chains among `chains` that belong to other software: name → owner."""
    return {c: owner for c in chains if (owner := chain_owner(c))}
