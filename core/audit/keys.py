"""The audit key: the HMAC key of the chain and its checkpoints, kept out of the database.

Someone who can write the database but not read this key cannot re-seal an entry they
edited, nor forge a checkpoint. It comes from `RAMPART_AUDIT_KEY`, else from a key file
beside the console's signing key (made on first use, mode 0600). It is never logged.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MIN_KEY_BYTES = 16

_lock = threading.Lock()
_cache: dict[str, bytes] = {}


def key_path() -> Path:
    conf = settings.RAMPART
    configured = conf.get("AUDIT_KEY_FILE")
    if configured:
        return Path(configured)
    return Path(conf["CONSOLE_KEY_FILE"]).with_name("audit-key")


def _create(path: Path) -> None:
    """Write a new random key with O_EXCL + link: of two processes racing, one key wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # left by a killed process with this pid: ours to replace
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def audit_key() -> bytes:
    """The key bytes; the environment's value wins over the file."""
    configured = settings.RAMPART.get("AUDIT_KEY") or ""
    if configured:
        if len(configured.encode()) < MIN_KEY_BYTES:
            raise ImproperlyConfigured(
                f"RAMPART_AUDIT_KEY must be at least {MIN_KEY_BYTES} bytes long"
            )
        return configured.encode()
    path = key_path()
    with _lock:
        cached = _cache.get(str(path))
        if cached is not None:
            return cached
        if not path.exists():
            _create(path)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        key = path.read_bytes().strip()
        if len(key) < MIN_KEY_BYTES:
            raise ImproperlyConfigured(f"the audit key file {path} holds too short a key")
        _cache[str(path)] = key
        return key


def forget_cached_keys() -> None:
    """Drop the keys read from files (tests that swap the key file)."""
    with _lock:
        _cache.clear()
