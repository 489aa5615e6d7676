"""Bundles stored once by hash, and read back for the records that point at them.

A confirmed bundle lives in the state directory (fsync'd: boot restores it); one awaiting
its confirm lives in the runtime directory. A serving agent writes a new bundle's file
from its background thread, after the apply: its JSON (~3 ms for 10k rules) is not part
of any apply. A restart before it is written loses nothing: the pending bundle is rolled
back at start, by a full rewrite that reads the kernel.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from rampart_agent.bundle import Bundle, bundle_json
from rampart_agent.state import (
    CONFIRMED_FILE,
    JOURNAL_FILE,
    LIVE_FILE,
    StateDir,
    atomic_write,
    fsync_path,
)

log = logging.getLogger("rampart.agent")

CACHED_BUNDLES = 4  # parsed bundles kept in memory (the live, confirmed and pending ones)


class BundleStore:
    """The bundle files of one state directory, with a cache of the parsed bundles."""

    def __init__(self, state: StateDir, queue_write: Callable[[Bundle], None]) -> None:
        """`queue_write` hands a bundle to the background writer (see `keep`)."""
        self.state = state
        self._queue_write = queue_write
        self.serving = False  # the background thread runs: files may be written later
        self.cache: dict[str, Bundle] = {}
        self._durable: set[str] = set()  # bundle files known to be fsync'd
        self._on_disk: set[str] = set()  # bundle files known to be there
        self._listed = False  # _on_disk holds every bundle file (the folders were listed)
        for pending in (False, True):
            state.bundle_file("x", pending).parent.mkdir(exist_ok=True)

    def keep(self, bundle: Bundle) -> None:
        """Keep the bundle by hash, in memory at once, and on disk (runtime directory) for
        other processes (`status`, `confirm`, a restart): by the background writer when
        serving, at once for a one-shot command (it exits before any thread would write).
        `write_confirmed` makes it durable in the state directory."""
        self.cache[bundle.hash] = bundle
        if not bundle.hash or bundle.hash in self._on_disk:
            return
        if not self.serving:
            self.write_file(bundle, pending=True)
            return
        self._queue_write(bundle)

    def write_queued(self, queued: list[Bundle]) -> list[Bundle]:
        """(background writer, under the apply lock) Write queued bundles; return those
        that could not be written, to be tried again later."""
        failed = []
        for bundle in queued:
            try:
                self.write_file(bundle, pending=True)
            except OSError as exc:  # e.g. the runtime directory is full: try again later
                log.error("could not store bundle %s: %s", bundle.hash[:12], exc)
                failed.append(bundle)
        return failed

    def write_file(self, bundle: Bundle, *, pending: bool) -> None:
        if bundle.hash in self._on_disk and (pending or bundle.hash in self._durable):
            return
        if pending:
            path = self.state.bundle_file(bundle.hash, pending=True)
            if not self.state.bundle_file(bundle.hash).exists() and not path.exists():
                atomic_write(path, bundle_json(bundle.raw), durable=False)
        else:
            path = self.state.bundle_file(bundle.hash)
            pending_path = self.state.bundle_file(bundle.hash, pending=True)
            if path.exists():
                fsync_path(path)
                fsync_path(path.parent)
            else:
                data = (
                    pending_path.read_bytes() if pending_path.exists() else bundle_json(bundle.raw)
                )
                atomic_write(path, data)  # fsync'd, folder too
            pending_path.unlink(missing_ok=True)
            self._durable.add(bundle.hash)
        self._on_disk.add(bundle.hash)

    def write_confirmed(self, record: dict[str, Any]) -> None:
        """The durable record boot restores from: its bundle file is made durable first."""
        digest = record.get("hash")
        # the file is checked, not only believed: the record must never name a missing one
        if digest and (digest not in self._durable or not self.state.bundle_file(digest).exists()):
            self._durable.discard(digest)
            self.write_file(self.load(digest), pending=False)
        self.state.write_json(CONFIRMED_FILE, record)

    def believed(self, digest: str | None) -> Bundle | None:
        """The bundle a record says the kernel holds, or None when its file was never
        written (the agent died within milliseconds of applying it): the caller then
        rewrites everything after reading the kernel, as after a crash."""
        try:
            return self.load(digest)
        except FileNotFoundError:
            log.warning(
                "bundle %s is not stored: the next change rewrites every chain", (digest or "")[:12]
            )
            return None

    def load(self, digest: str | None) -> Bundle:
        if not digest:
            return Bundle.empty()
        if digest in self.cache:
            return self.cache[digest]
        path = self.state.bundle_file(digest)
        if not path.exists():
            path = self.state.bundle_file(digest, pending=True)
        raw = json.loads(path.read_bytes())
        raw["hash"] = digest
        bundle = Bundle.parse(raw, verify_hash=False)
        self._on_disk.add(digest)
        cache = self.cache  # changed in place: other holders see the same dict
        cache[digest] = bundle
        for old in list(cache)[:-CACHED_BUNDLES]:
            del cache[old]
        return bundle

    def gc(self, keep: set[str | None] | None = None) -> None:
        """Delete stored bundles nothing refers to; `keep` when the caller knows it."""
        if keep is None:
            keep = {
                (self.state.read_json(name) or {}).get("hash")
                for name in (CONFIRMED_FILE, LIVE_FILE)
            }
            journal = self.state.read_json(JOURNAL_FILE) or {}
            keep |= {journal.get("from"), journal.get("to")}
        self.cache = {k: v for k, v in self.cache.items() if k in keep}
        if self._listed and self._on_disk <= keep:
            return  # nothing to delete, and no directory listing needed to know it
        folders = [
            self.state.bundle_file("x").parent,
            self.state.bundle_file("x", pending=True).parent,
        ]
        left: set[str] = set()
        for folder in folders:
            for path in folder.glob("*.json"):
                if path.stem not in keep:
                    path.unlink(missing_ok=True)
                    if folder == folders[0]:
                        self._durable.discard(path.stem)
                else:
                    left.add(path.stem)
        # what is left; other processes (the local `apply` command) only add under the lock
        self._on_disk, self._listed = left, True
