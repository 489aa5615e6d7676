"""Group commit for the threads of a deploy batch: their writes share transactions.

Every state of a device deployment commits with its audit entry, and each commit appends
to the audit chain, whose head row is locked from the append to the commit: appends are
serialised across all workers. Eight threads per batch, each committing three times per
device, queued on that lock (measured: 2–7 backends waiting on it at any moment, ~30
devices/s whatever the number of worker processes). Here the batch's own thread runs
the writes its push threads hand it: whatever several threads handed meanwhile goes in
one transaction with one chain append, and each thread goes on only once its write is
committed, so "written before the next step" holds exactly as before (the `applied` state
is committed before the confirm is sent).

A write is a function without side effects on Python objects (it can run twice): a group
that fails is rolled back and each of its writes is run again in a transaction of its own,
so one device's failed write never undoes or fails another's. Outside a batch thread
(`deploy_device`, the sweeper, tests) `committed` just runs the write.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from core.audit.services import deferred

T = TypeVar("T")
Write = Callable[[], Any]

_funnel: contextvars.ContextVar[WriteFunnel | None] = contextvars.ContextVar(
    "rampart_write_funnel", default=None
)
_unit: contextvars.ContextVar[list[Write] | None] = contextvars.ContextVar(
    "rampart_write_unit", default=None
)


class FunnelClosed(Exception):
    """The batch stopped serving writes (its time limit) before this one was committed."""


class _Job:
    __slots__ = ("done", "error", "result", "write")

    def __init__(self, write: Write) -> None:
        self.write = write
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class WriteFunnel:
    """Writes handed by the push threads, run by the thread that calls `serve`."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._open = True
        self.groups = 0  # transactions committed (for the tests and the bench)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Route this thread's `committed` writes through the funnel."""
        token = _funnel.set(self)
        try:
            yield
        finally:
            _funnel.reset(token)

    def submit(self, write: Write) -> Any:
        """Run `write` in the next group transaction; its result once committed."""
        if not self._open:
            return _alone(write)
        job = _Job(write)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def serve(self, finished: Callable[[], bool]) -> None:
        """Commit the writes handed in, in groups, until `finished()` and none is left."""
        while True:
            try:
                group = [self._jobs.get(timeout=0.02)]
            except queue.Empty:
                if finished():
                    return
                continue
            while True:
                try:
                    group.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            self._commit(group)

    def close(self) -> None:
        """Stop serving: writes still waiting fail with FunnelClosed, later ones run alone."""
        self._open = False
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            _stopped([job])

    def _commit(self, group: list[_Job]) -> None:
        try:
            with deferred():  # one transaction, one chain append for the whole group
                results = [job.write() for job in group]
        except SoftTimeLimitExceeded:  # the task stops: nothing of the group was written
            _stopped(group)
            raise
        except Exception:  # noqa: BLE001 - each write again alone: its own error, its own fate
            for i, job in enumerate(group):
                try:
                    job.result = _alone(job.write)
                except SoftTimeLimitExceeded:
                    _stopped(group[i:])
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to the thread that wrote it
                    job.error = exc
                job.done.set()
            return
        self.groups += 1
        for job, result in zip(group, results, strict=True):
            job.result = result
            job.done.set()


def _stopped(jobs: list[_Job]) -> None:
    for job in jobs:
        job.error = FunnelClosed("the batch stopped before this write was committed")
        job.done.set()


def _alone(write: Write) -> Any:
    with deferred():
        return write()


def committed(write: Callable[[], T]) -> T | None:
    """Run `write` now (in the caller's transaction, if any), or in a batch thread through
    its funnel; inside `one_commit` it is kept for the block's single commit (None). A
    write with an `absorb(later) -> bool` method may take the next write of the block into
    itself (two states of one row: one UPDATE)."""
    unit = _unit.get()
    if unit is not None:
        absorb = getattr(unit[-1], "absorb", None) if unit else None
        if absorb is None or not absorb(write):
            unit.append(write)
        return None
    funnel = _funnel.get()
    if funnel is not None:
        return funnel.submit(write)
    return write()


@contextmanager
def one_commit() -> Iterator[None]:
    """The writes of the block commit together at its end, with one chain append (as
    `deferred`), through the funnel in a batch thread. Nested blocks join the outermost."""
    if _unit.get() is not None:
        yield
        return
    writes: list[Write] = []
    token = _unit.set(writes)
    try:
        yield
    finally:
        _unit.reset(token)
    committed(lambda: [write() for write in writes])
