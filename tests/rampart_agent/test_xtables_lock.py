"""Waiting for another program's xtables lock: said while it lasts, bounded, then given up."""

import subprocess
import threading
import time

import pytest

from rampart_agent.dataplane import IptablesDataplane, XtablesLockBusy
from rampart_agent.dataplane.xtables_lock import WAITING, await_free, lock_file
from rampart_agent.runner import FakeRunner


@pytest.fixture
def lock(tmp_path, monkeypatch):
    """A private lock file (the tools' XTABLES_LOCKFILE), never the host's /run/xtables.lock."""
    path = tmp_path / "xtables.lock"
    monkeypatch.setenv("XTABLES_LOCKFILE", str(path))
    return path


def hold(path, seconds: float) -> subprocess.Popen:
    """`flock PATH sleep N`, as an admin's iptables run would hold it; returns once held."""
    proc = subprocess.Popen(["flock", str(path), "sleep", str(seconds)])
    deadline = time.monotonic() + 5
    while subprocess.run(["flock", "-n", str(path), "true"]).returncode == 0:
        assert time.monotonic() < deadline, "flock did not take the lock"
        time.sleep(0.01)
    return proc


def test_a_free_lock_costs_no_wait(lock):
    calls = []
    assert lock_file() == str(lock)
    assert await_free(5, calls.append) == 0.0 and calls == []


def test_a_held_lock_is_waited_for_and_said(lock):
    proc = hold(lock, 0.6)
    calls = []
    t0 = time.monotonic()
    waited = await_free(5, calls.append)
    assert 0.3 < waited <= time.monotonic() - t0 < 2
    assert calls == [True, False]
    proc.wait(timeout=5)


def test_the_wait_is_bounded(lock):
    proc = hold(lock, 5)
    try:
        with pytest.raises(XtablesLockBusy, match="held by another program for more than 0 s"):
            await_free(0.3, lambda waiting: None)
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_the_legacy_dataplane_reports_the_wait_as_its_activity(lock):
    dp = IptablesDataplane("legacy", FakeRunner())
    proc = hold(lock, 0.6)
    seen = []
    waiter = threading.Thread(target=lambda: seen.append(dp.await_kernel_lock(5)))
    waiter.start()
    deadline = time.monotonic() + 2
    while dp.activity != WAITING:
        assert time.monotonic() < deadline, "the wait was never reported"
        time.sleep(0.01)
    waiter.join(timeout=5)
    assert dp.activity == "" and seen and seen[0] > 0.2
    proc.wait(timeout=5)
    # iptables-nft takes no xtables lock: nothing to wait for
    proc = hold(lock, 2)
    assert IptablesDataplane("nft", FakeRunner()).await_kernel_lock(0.1) == 0.0
    proc.kill()
    proc.wait(timeout=5)
