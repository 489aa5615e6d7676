"""Fixtures of the onboarding tests that build real hosts in namespaces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .equivalence import root_firewall

# where ufw, firewalld, shorewall and D-Bus keep the root host's configuration and state:
# the tools run on private copies and must leave these alone
ROOT_CONFIG = (
    "/etc/ufw", "/etc/default/ufw", "/lib/ufw", "/etc/firewalld", "/etc/shorewall",
    "/var/lib/shorewall", "/var/lib/firewalld", "/run/dbus", "/run/firewalld",
)  # fmt: skip


def root_config() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file and directory under ROOT_CONFIG."""
    out = {}
    for top in ROOT_CONFIG:
        for base, dirs, files in os.walk(top):
            for name in [".", *dirs, *files]:
                path = Path(base, name)
                st = path.lstat()
                out[str(path)] = (st.st_mtime_ns, st.st_size)
        if Path(top).is_file():
            st = Path(top).stat()
            out[top] = (st.st_mtime_ns, st.st_size)
    return out


@pytest.fixture
def root_untouched():
    """Fails the test if the root namespace's firewall, or the tools' configuration and
    state on the root host, changed while it ran."""
    before, config = root_firewall(), root_config()
    yield
    assert root_firewall() == before, "the root namespace's firewall changed"
    after = root_config()
    changed = sorted(k for k in config.keys() | after.keys() if config.get(k) != after.get(k))
    assert not changed, f"the root host's configuration changed: {changed}"
