"""Waiting for the xtables lock in the open.

iptables-legacy serialises every table change on one flock()ed file: `XTABLES_LOCKFILE`,
or /run/xtables.lock, as the tools find it (a path, so in this mount namespace).
`iptables-restore --wait` waits for it without a word; the agent looks first, so that it
can say it is waiting (status `activity`, log), for how long, and give up after a known
time before its restore tool has read a line (nothing changed). iptables-nft takes no
such lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable

from rampart_agent.dataplane.base import DataplaneError

log = logging.getLogger("rampart.agent")

DEFAULT_LOCK_FILE = "/run/xtables.lock"
POLL_SECONDS = 0.01  # how soon after the holder lets go the apply goes on
WAITING = "waiting for the xtables lock"  # the status `activity` meanwhile


class XtablesLockBusy(DataplaneError):
    """Another program held the xtables lock for the whole wait; nothing was changed."""


def lock_file() -> str:
    """The lock file the iptables tools of this process's environment use."""
    return os.environ.get("XTABLES_LOCKFILE") or DEFAULT_LOCK_FILE


def await_free(timeout: float, on_wait: Callable[[bool], None]) -> float:
    """Return once nobody holds the xtables lock (the seconds waited for it).

    `on_wait(True)` is called when a wait begins, `on_wait(False)` when it ends. The lock
    is only tested, never kept: the restore tool takes it itself right after (and waits
    with `--wait` in the rare case someone takes it in between). Raises XtablesLockBusy
    after `timeout` seconds.
    """
    try:
        fd = os.open(lock_file(), os.O_RDONLY | os.O_CREAT, 0o600)
    except OSError:
        return 0.0  # cannot look (read-only /run): the tool's own --wait still applies
    start = time.monotonic()
    waiting = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waited = time.monotonic() - start
                if not waiting:
                    waiting = True
                    on_wait(True)
                    log.warning(
                        "%s (%s, held by another program); giving up after %.0f s",
                        WAITING,
                        lock_file(),
                        timeout,
                    )
                if waited >= timeout:
                    raise XtablesLockBusy(
                        f"the xtables lock ({lock_file()}) was held by another program "
                        f"for more than {timeout:.0f} s"
                    ) from None
                time.sleep(POLL_SECONDS)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            waited = time.monotonic() - start
            if waiting:
                log.warning("got the xtables lock after %.1f s", waited)
            return waited if waiting else 0.0
    finally:
        os.close(fd)
        if waiting:
            on_wait(False)
