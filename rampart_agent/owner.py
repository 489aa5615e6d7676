"""One process owns a state directory at a time: an flock on `owner.lock` in it.

`serve` holds it for its whole life; a one-shot command (`apply`, `rollback`, ...) takes
it for its run, or, beside a running `serve`, hands its work to that process over the
control socket (control.py). Two engines over one directory would each trust their own
memory of which bundle files exist and delete the other's (issue: a break-glass apply
beside `serve` left a confirmed record naming a deleted bundle, and no start after it).
The lock dies with its process (kill -9 included): no stale lock to clear by hand.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

OWNER_FILE = "owner.lock"
SERVE = "serve"


class Owner:
    """The owner lock of one state directory, held by this process once `acquire`d."""

    def __init__(self, state_path: Path) -> None:
        self.path = state_path / OWNER_FILE
        self._fd: int | None = None

    def try_acquire(self, role: str) -> bool:
        """Take the lock without waiting; on success write `PID ROLE` into the file."""
        # O_NOFOLLOW: a symlink planted as owner.lock must not make root truncate its target
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
        self._fd = fd
        return True

    def holder(self) -> tuple[int, str]:
        """(pid, role) of the holder as it wrote them; (0, "") while it has not yet."""
        try:
            pid, _, role = self.path.read_text().strip().partition(" ")
            return int(pid), role
        except (OSError, ValueError):
            return 0, ""

    def wait(self, role: str, timeout: float, poll: float = 0.05) -> tuple[int, str] | None:
        """Take the lock, waiting up to `timeout` seconds while a one-shot command holds
        it; returns None once taken, or the holder when that is `serve` (it will not let
        go) or when the time is up."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire(role):
            pid, holder = self.holder()
            if holder == SERVE or time.monotonic() >= deadline:
                return pid, holder
            time.sleep(poll)
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
