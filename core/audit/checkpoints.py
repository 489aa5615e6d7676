"""Signed checkpoints of the chain's head, kept outside the database.

A checkpoint says "at this time the chain ended at entry #seq with this MAC", signed with
the audit key (HMAC-SHA256). Copies go to every configured sink (a directory of
append-only files, a logger that syslog can carry off the host, or your own callable),
so deleting the newest entries and rewinding the head row is caught: the chain then ends
short of a checkpoint, or its entry at the checkpoint's position no longer matches.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import syslog
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from rampart_contract.canonical import canonical_json, canonical_text

from .keys import audit_key

VERSION = 1
SIGN_PREFIX = b"rampart-audit-checkpoint-v1\n"
FILE_GLOB = "checkpoints-*.jsonl"
logger = logging.getLogger("rampart.audit.checkpoint")

Sink = Callable[["Checkpoint"], None]


class CheckpointInvalid(ValueError):
    """A checkpoint line that does not parse or whose signature does not match."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head: str
    time: datetime
    sig: str = ""
    source: str = ""  # where it was read from (file name), for reports

    def payload(self) -> dict[str, Any]:
        return {"v": VERSION, "seq": self.seq, "head": self.head, "time": self.time.isoformat()}

    def line(self) -> str:
        return canonical_text({**self.payload(), "sig": self.sig})

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "head": self.head,
            "time": self.time.isoformat(),
            "source": self.source,
        }


def _signature(payload: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, SIGN_PREFIX + canonical_json(payload), hashlib.sha256).hexdigest()


def signed(seq: int, head: str, time: datetime, key: bytes | None = None) -> Checkpoint:
    unsigned = Checkpoint(seq=seq, head=head, time=time)
    return Checkpoint(seq, head, time, sig=_signature(unsigned.payload(), key or audit_key()))


def parse(line: str, key: bytes, source: str = "") -> Checkpoint:
    """The checkpoint in one JSON line; CheckpointInvalid when malformed or forged."""
    try:
        data = json.loads(line)
        cp = Checkpoint(
            seq=int(data["seq"]),
            head=str(data["head"]),
            time=datetime.fromisoformat(data["time"]),
            sig=str(data["sig"]),
            source=source,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointInvalid(f"unreadable checkpoint in {source or 'input'}: {exc}") from exc
    # bytes, not str: compare_digest raises TypeError on non-ASCII text (a forged line)
    expected = _signature(cp.payload(), key).encode()
    if data.get("v") != VERSION or not hmac.compare_digest(cp.sig.encode(), expected):
        raise CheckpointInvalid(
            f"checkpoint #{cp.seq} in {source or 'input'} has an invalid signature: "
            "forged, edited, or signed with another audit key"
        )
    return cp


# --- sinks --------------------------------------------------------------------------------


def checkpoint_dir() -> Path:
    return Path(settings.RAMPART["AUDIT_CHECKPOINT_DIR"])


def _append_line(path: Path, text: str) -> None:
    """Append one line and fsync it (and the directory when the file is new)."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def directory_sink(cp: Checkpoint) -> None:
    """Append to `<RAMPART_AUDIT_CHECKPOINT_DIR>/checkpoints-YYYY-MM.jsonl`."""
    directory = checkpoint_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    _append_line(directory / f"checkpoints-{cp.time:%Y-%m}.jsonl", cp.line())


def log_sink(cp: Checkpoint) -> None:
    """Log on `rampart.audit.checkpoint`: point a SysLogHandler at it to keep a copy off-host."""
    logger.info("audit checkpoint %s", cp.line())


def syslog_sink(cp: Checkpoint) -> None:
    """Straight to the local syslog daemon (facility AUTHPRIV, tag `rampart-audit`), which
    can forward it off the host whatever the console's logging configuration says."""
    syslog.openlog("rampart-audit", 0, syslog.LOG_AUTHPRIV)
    syslog.syslog(syslog.LOG_NOTICE, f"audit checkpoint {cp.line()}")


def configured_sinks() -> list[Sink]:
    return [import_string(path) for path in settings.RAMPART["AUDIT_CHECKPOINT_SINKS"]]


def publish(cp: Checkpoint) -> list[str]:
    """Hand `cp` to every sink; a failing sink does not stop the others. Returns failures."""
    failures = []
    for sink in configured_sinks():
        try:
            sink(cp)
        except Exception as exc:  # a full disk or a dead syslog must not hide the other copies
            logger.exception("audit checkpoint sink %s failed", getattr(sink, "__name__", sink))
            failures.append(f"{getattr(sink, '__name__', sink)}: {exc}")
    return failures


# --- reading back -------------------------------------------------------------------------


def last_checkpoint(key: bytes | None = None) -> tuple[Checkpoint | None, list[str]]:
    """The newest correctly signed checkpoint in the directory, and a problem per line
    newer than it that was unreadable or forged."""
    directory = checkpoint_dir()
    if not directory.is_dir():
        return None, []
    key = key or audit_key()
    problems: list[str] = []
    for path in sorted(directory.glob(FILE_GLOB), reverse=True):
        lines = path.read_text(errors="replace").splitlines()
        for number in range(len(lines), 0, -1):
            text = lines[number - 1].strip()
            if not text:
                continue
            try:
                return parse(text, key, source=f"{path.name}:{number}"), problems
            except CheckpointInvalid as exc:
                problems.append(str(exc))
    return None, problems
