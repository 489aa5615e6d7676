"""Runner: commands with input, timeouts, processes kept waiting, restores fed in parts."""

import subprocess
import time

import pytest

from rampart_agent.runner import CommandError, Runner


def test_runner_kills_a_command_that_outlives_its_timeout():
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        Runner(timeout=0.3).run(["sleep", "30"])
    assert time.monotonic() - started < 5


def test_runner_passes_input_and_reports_failure_with_stderr():
    assert Runner().run(["cat"], input="rule\n").stdout == "rule\n"
    with pytest.raises(CommandError, match="rc=3.*nope"):
        Runner().run(["sh", "-c", "echo nope >&2; exit 3"])
    assert Runner().run(["sh", "-c", "exit 3"], check=False).returncode == 3


def test_runner_keeps_a_started_process_waiting_and_uses_it():
    """keep_warm: the command is started ahead, fed when run; a new one waits after each
    use (started only once `busy` ends); stop_warm lets the waiting ones exit."""
    runner = Runner()
    argv = ["sh", "-c", "echo $$; cat"]  # prints its pid, then its input
    runner.keep_warm([argv])
    waiting = _wait_for_warm(runner, argv)
    with runner.busy():
        out = runner.run(argv, input="one\n").stdout.split("\n")
        assert out[0] == str(waiting.pid) and out[1] == "one"
        assert runner._warm[tuple(argv)] is None  # not restarted inside the busy block
    second = _wait_for_warm(runner, argv)
    assert second.pid != waiting.pid
    assert runner.run(argv, input="two\n").stdout.split("\n")[:2] == [str(second.pid), "two"]
    third = _wait_for_warm(runner, argv)
    runner.stop_warm()
    assert third.wait(timeout=5) == 0  # empty input: it exits, having done nothing
    assert runner.run(argv, input="three\n").stdout.split("\n")[1] == "three"  # cold again


def test_pending_command_fed_in_parts_or_aborted():
    """A restore tool acts on its input only once it has it all: abort() kills it first."""
    runner = Runner()
    pending = runner.start(["cat"])
    pending.feed("head\n")
    assert pending.finish("tail\n").stdout == "head\ntail\n"
    pending = runner.start(["sh", "-c", "cat >/dev/null; echo done"])
    pending.feed("head\n")
    pending.abort()
    assert pending.proc.returncode != 0
    quits = runner.start(["sh", "-c", "echo refused >&2; exit 4"])
    time.sleep(0.2)
    quits.feed("x" * 1_000_000)  # the tool already quit: no BrokenPipeError here
    with pytest.raises(CommandError, match="rc=4.*refused"):
        quits.finish("more")


def _wait_for_warm(runner: Runner, argv: list[str]) -> subprocess.Popen:
    deadline = time.monotonic() + 5
    while runner._warm.get(tuple(argv)) is None:
        assert time.monotonic() < deadline, "no waiting process was started"
        time.sleep(0.005)
    return runner._warm[tuple(argv)]
