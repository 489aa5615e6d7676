"""Injectable command runner and clock: the seams that let the dataplane be tested fast."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field


@dataclass
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""


class CommandError(Exception):
    """A command that failed; the message carries its stderr (what the kernel said)."""

    def __init__(self, argv: Sequence[str], result: Result) -> None:
        self.argv = list(argv)
        self.result = result
        err = (result.stderr or result.stdout).strip().replace("\n", " | ")
        super().__init__(f"{' '.join(argv[:2])} failed (rc={result.returncode}): {err[:600]}")


class Runner:
    """Runs commands; `prefix` (e.g. `ip netns exec NS`) is prepended to every argv."""

    def __init__(self, prefix: Sequence[str] = (), timeout: float = 300) -> None:
        self.prefix = list(prefix)
        self.timeout = timeout
        # command -> its waiting process (None: wanted, being started)
        self._warm: dict[tuple[str, ...], subprocess.Popen | None] = {}
        self._warm_lock = threading.Lock()
        self._held: list[tuple[str, ...]] | None = None  # refills waiting for `busy` to end

    def netns(self) -> tuple[bool, str | None]:
        """Where this runner's commands run, for code that asks that kernel directly
        (netlink) instead of running a command: (True, None) this process's namespace,
        (True, NAME) for `ip netns exec NAME`, (False, None) a prefix it cannot follow."""
        if not self.prefix:
            return True, None
        if len(self.prefix) == 4 and self.prefix[:3] == ["ip", "netns", "exec"]:
            return True, self.prefix[3]
        return False, None

    def keep_warm(self, argvs: Iterable[Sequence[str]]) -> None:
        """Keep one started process of each of these commands waiting for its input.

        For the restore tools a long-running agent calls on every apply: their start
        (fork, exec, dynamic linking: ~1 ms, half of a 100-rule legacy restore) then happens
        between applies instead of inside one. A waiting restore tool has read nothing,
        holds no lock and has opened no table (iptables-restore takes the xtables lock at
        its first `*table` line); it exits at once, changing nothing, when its input is
        closed empty — which the kernel closes for it if the agent dies.
        """
        for argv in argvs:
            key = tuple(argv)
            with self._warm_lock:
                if key not in self._warm:
                    self._warm[key] = None  # wanted, not yet up
            _WARMER.request(self, key)

    def _spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        return subprocess.Popen(
            [*self.prefix, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _refill(self, key: tuple[str, ...]) -> None:
        """(warmer thread) Start the waiting process for `key` if it is still wanted."""
        with self._warm_lock:
            if key not in self._warm or self._warm[key] is not None:
                return
        proc = self._spawn(key)
        with self._warm_lock:
            if key in self._warm and self._warm[key] is None:
                self._warm[key] = proc
                return
        proc.communicate("")  # no longer wanted (stopped meanwhile)

    def _take(self, key: tuple[str, ...]) -> subprocess.Popen | None:
        with self._warm_lock:
            if key not in self._warm:
                return None
            proc, self._warm[key] = self._warm[key], None
            refill_now = self._held is None
            if self._held is not None:
                self._held.append(key)
        if refill_now:
            _WARMER.request(self, key)  # the next apply finds one waiting again
        if proc is not None and proc.poll() is None:
            return proc
        return None

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Start no replacement process until the block ends: starting one holds the GIL
        for ~0.5 ms, which would land in the middle of the apply that used its predecessor.
        """
        with self._warm_lock:
            self._held = []
        try:
            yield
        finally:
            with self._warm_lock:
                held, self._held = self._held or [], None
            for key in held:
                _WARMER.request(self, key)

    def stop_warm(self) -> None:
        """Let the waiting processes exit (empty input) and keep none from now on."""
        with self._warm_lock:
            procs = [p for p in self._warm.values() if p is not None]
            self._warm.clear()
        for proc in procs:
            proc.communicate("")

    def run(self, argv: Sequence[str], input: str | None = None, check: bool = True) -> Result:
        """Run to completion; killed (TimeoutExpired) after `timeout` seconds."""
        return self.start(argv).finish(input or "", check=check)

    def start(self, argv: Sequence[str]) -> Pending:
        """Start a command (or take its waiting process) to be fed its input in parts.

        For tools that read all their input before they act and write little (the restore
        tools): the caller may feed most of the input, do other work while the tool parses
        it, then feed the rest. The timeout runs from here.
        """
        proc = self._take(tuple(argv)) if self._warm else None
        if proc is None:
            proc = self._spawn(argv)
        return Pending([*self.prefix, *argv], list(argv), proc, self.timeout)


class Pending:
    """A started command: `feed` input, then `finish` (or `abort`).

    The timeout is kept by one shared watchdog thread, not `subprocess.run(timeout=…)`:
    that one waits for the exit by polling with sleeps of 0.5 ms, 1 ms, 2 ms…, which
    added ~1 ms to every iptables-restore (a 100-rule legacy restore takes 2.1 ms).
    """

    def __init__(
        self, full: list[str], argv: list[str], proc: subprocess.Popen, timeout: float
    ) -> None:
        self.full, self.argv, self.proc, self.timeout = full, argv, proc, timeout
        self._ticket = _WATCHDOG.watch(proc, timeout)
        self._feeder: threading.Thread | None = None

    def feed_all_in_background(self, text: str) -> None:
        """Write all of `text` and close the input from another thread: the tool works
        through a large input (a 100k-entry set) while this thread does other work."""

        def feed() -> None:
            self.feed(text)
            self._close_input()

        self._feeder = threading.Thread(target=feed, daemon=True, name="command-feeder")
        self._feeder.start()

    def _join_feeder(self) -> None:
        if self._feeder is not None:
            self._feeder.join()
            self._feeder = None

    def feed(self, text: str) -> None:
        """Write input; a tool that already quit (it refused a line) is not an error here:
        `finish` reports its exit status and what it said."""
        stdin = self.proc.stdin
        if stdin is None or not text:
            return
        try:
            stdin.write(text)
            stdin.flush()
        except (BrokenPipeError, ValueError):
            self._close_input()

    def _close_input(self) -> None:
        stdin, self.proc.stdin = self.proc.stdin, None
        if stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    def finish(self, text: str = "", check: bool = True) -> Result:
        """Feed the rest, close the input, wait for the exit."""
        self._join_feeder()
        self.feed(text)
        self._close_input()
        try:
            stdout, stderr = self.proc.communicate()
        finally:
            expired = _WATCHDOG.release(self._ticket)
        if expired:
            raise subprocess.TimeoutExpired(self.full, self.timeout, stdout, stderr)
        result = Result(self.proc.returncode, stdout, stderr)
        if check and self.proc.returncode != 0:
            raise CommandError(self.argv, result)
        return result

    def abort(self) -> None:
        """Kill it before it reads the rest of its input (a restore tool then changes
        nothing: it acts only on a complete `COMMIT`)."""
        self.proc.kill()
        self._join_feeder()  # its write fails at once: the reader is gone
        self._close_input()
        try:
            self.proc.communicate()
        finally:
            _WATCHDOG.release(self._ticket)


class _Buffered:
    """A `Pending` look-alike that runs the whole input at `finish` (test doubles)."""

    def __init__(self, run: Callable[[str, bool], Result]) -> None:
        self._run = run
        self._parts: list[str] = []

    def feed(self, text: str) -> None:
        self._parts.append(text)

    feed_all_in_background = feed

    def finish(self, text: str = "", check: bool = True) -> Result:
        return self._run("".join(self._parts) + text, check)

    def abort(self) -> None:
        self._parts = []


class _Watchdog:
    """Kills processes that outlive their deadline; one thread for every Runner."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A fresh, thread-less state (in a forked child: the thread did not survive)."""
        self._cv = threading.Condition()
        self._procs: dict[int, tuple[float, subprocess.Popen]] = {}
        self._expired: set[int] = set()
        self._next = 0
        self._thread: threading.Thread | None = None

    def watch(self, proc: subprocess.Popen, timeout: float) -> int:
        with self._cv:
            self._next += 1
            self._procs[self._next] = (time.monotonic() + timeout, proc)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="command-watchdog"
                )
                self._thread.start()
            self._cv.notify()
            return self._next

    def release(self, ticket: int) -> bool:
        """Stop watching; True if the process was killed for its timeout."""
        with self._cv:
            self._procs.pop(ticket, None)
            if ticket in self._expired:
                self._expired.discard(ticket)
                return True
            return False

    def _run(self) -> None:
        with self._cv:
            while True:
                now = time.monotonic()
                for ticket, (deadline, proc) in list(self._procs.items()):
                    if deadline <= now:
                        del self._procs[ticket]
                        self._expired.add(ticket)
                        proc.kill()
                soonest = min((d for d, _ in self._procs.values()), default=None)
                self._cv.wait(None if soonest is None else max(soonest - now, 0.001))


class _Warmer:
    """Starts the waiting processes of `Runner.keep_warm` off the caller's path."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A fresh, thread-less state (in a forked child: the thread did not survive)."""
        self._cv = threading.Condition()
        self._todo: list[tuple[Runner, tuple[str, ...]]] = []
        self._thread: threading.Thread | None = None

    def request(self, runner: Runner, key: tuple[str, ...]) -> None:
        with self._cv:
            self._todo.append((runner, key))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="command-warmer"
                )
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._todo:
                    self._cv.wait()
                runner, key = self._todo.pop(0)
            try:
                runner._refill(key)
            except OSError:  # the tool is missing: run() will say so when it is needed
                with runner._warm_lock:
                    runner._warm.pop(key, None)


_WATCHDOG = _Watchdog()
_WARMER = _Warmer()


def _after_fork_in_child() -> None:
    """The threads do not survive a fork: the child starts its own when it needs them."""
    _WATCHDOG.reset()
    _WARMER.reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass
class FakeRunner(Runner):
    """Test double: answers from `handler(argv, input)` and records every call."""

    handler: Callable[[list[str], str | None], Result] = lambda argv, inp: Result(0)
    calls: list[tuple[list[str], str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefix = []

    def netns(self) -> tuple[bool, str | None]:
        """No kernel behind a fake: everything goes through `run`."""
        return False, None

    def keep_warm(self, argvs: Iterable[Sequence[str]]) -> None:
        """Nothing to start: the handler answers at once."""

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        yield

    def stop_warm(self) -> None:
        pass

    def start(self, argv: Sequence[str]) -> Pending:
        return _Buffered(lambda text, check: self.run(argv, text, check))  # type: ignore[return-value]

    def run(self, argv: Sequence[str], input: str | None = None, check: bool = True) -> Result:
        self.calls.append((list(argv), input))
        result = self.handler(list(argv), input)
        if check and result.returncode != 0:
            raise CommandError(argv, result)
        return result


class Clock:
    """Wall clock and monotonic clock; tests pass a fake one."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
