"""Helpers of the fault-injection suite (fixtures in conftest.py). Its stack: a real `celery worker` (+ beat) and gunicorn on Redis and
one SQLite file, with a 30 s task time limit so the documented bound (2 x T) is 60 s, and
in-process agents whose applies take a second (so work is queued when the fault strikes).

Run with `make test-faults`; docs/operations-faults.md has the bound and the figures.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from agents.client import console_public_key_b64
from agents.models import DeviceDeployment
from tests.support.deploy import (
    LocalAgent,
    Stack,
    console_stack,
    free_port,
    local_agent,
    make_device,
    make_policy,
    migrate_file_db,
    use_database,
)

# A database of its own: kombu keeps unacked messages in one hash per database, and any
# consumer with a shorter visibility timeout (the other worker tests use 6 s) would hand the
# killed worker's messages back before the sweeper has to.
REDIS_URL = os.environ.get("RAMPART_TEST_FAULTS_REDIS_URL", "redis://127.0.0.1:6379/13")
#: the task time limit T of the suite; every device deployment must end within BOUND
TIME_LIMIT = 30
BACKOFF_MAX = 2
BOUND = 2 * TIME_LIMIT
APPLY_SECONDS = 1.0
TERMINAL = ("confirmed", "unchanged", "failed", "rolled_back", "superseded", "skipped")


def fault_env(**extra: str) -> dict[str, str]:
    """The suite's knobs: T, the production formula for the visibility timeout (so the
    broker's redelivery cannot be what ends lost work within the bound), a 2 s sweeper."""
    return {
        "RAMPART_TASK_TIME_LIMIT": str(TIME_LIMIT),
        "RAMPART_DEPLOY_MAX_ATTEMPTS": "3",
        "RAMPART_DEPLOY_RETRY_BACKOFF": "1",
        "RAMPART_DEPLOY_RETRY_BACKOFF_MAX": str(BACKOFF_MAX),
        "RAMPART_BROKER_VISIBILITY_TIMEOUT": str(TIME_LIMIT + BACKOFF_MAX + 60),
        "RAMPART_SWEEP_SECONDS": "2",
        "RAMPART_STATUS_POLL_SECONDS": "3600",  # no status polls competing for the worker
        **extra,
    }


def redis_up(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
        return True
    except OSError:
        return False


@dataclass
class FaultDB:
    url: str
    key_file: str


@pytest.fixture(scope="session")
def fault_db(tmp_path_factory) -> FaultDB:
    tmp = tmp_path_factory.mktemp("faultdb")
    return FaultDB(migrate_file_db(tmp / "console.sqlite3"), str(tmp / "console-key.pem"))


@pytest.fixture
def console_key(fault_db, settings) -> str:
    """The console's public key (the workers sign with the same key file)."""
    settings.RAMPART = {**settings.RAMPART, "CONSOLE_KEY_FILE": fault_db.key_file}
    return console_public_key_b64()


@contextmanager
def fault_stack(
    tmp: Path, fault_db: FaultDB, broker_url: str, django_db_blocker, **extra: str
) -> Iterator[Stack]:
    """gunicorn + a 2-process worker with beat, on `broker_url`, with the suite's knobs;
    the test's ORM calls go to the stack's database inside the block."""
    with (
        django_db_blocker.unblock(),
        console_stack(
            tmp,
            fault_db.url,
            broker_url,
            [f"127.0.0.1:{free_port()}"],
            RAMPART_CONSOLE_KEY_FILE=fault_db.key_file,
            **fault_env(**extra),
        ) as stack,
        use_database(fault_db.url),
    ):
        yield stack


@contextmanager
def slow_agents(tmp: Path, console_key: str, n: int) -> Iterator[list[LocalAgent]]:
    """`n` in-process agents (recording dataplane) whose every apply takes APPLY_SECONDS."""

    def slow(family: str, payload: str) -> None:
        if family == "v4":
            time.sleep(APPLY_SECONDS)
        return None

    with ExitStack() as stack:
        yield [
            stack.enter_context(local_agent(tmp / f"agent-{i}", console_key, fail_on=slow))
            for i in range(n)
        ]


def fleet(name: str, agents: list[LocalAgent]) -> list[int]:
    """One device per agent, all in the group of a fresh rule set `name`; their ids."""
    _, group = make_policy(name)
    return [make_device(f"{name}-{i}", group=group, agent=a).pk for i, a in enumerate(agents)]


def states(deployment_id: int) -> dict[int, str]:
    return dict(
        DeviceDeployment.objects.filter(deployment_id=deployment_id).values_list("pk", "state")
    )


def wait_terminal(deployment_id: int, since: float, timeout: float) -> float:
    """Seconds from `since` (time.monotonic()) until every device deployment is terminal."""
    deadline = since + timeout
    while True:
        now = time.monotonic()
        if all(s in TERMINAL for s in states(deployment_id).values()):
            return now - since
        if now > deadline:
            left = {k: v for k, v in states(deployment_id).items() if v not in TERMINAL}
            raise AssertionError(f"not terminal {timeout:.0f}s after the fault: {left}")
        time.sleep(0.25)


def wait_state(deployment_id: int, pred: Callable[[dict[int, str]], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred(states(deployment_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {states(deployment_id)}")
        time.sleep(0.05)


def report(capsys, line: str) -> None:
    """A figure for docs/operations-faults.md, shown even when pytest captures output."""
    with capsys.disabled():
        print(f"\n[faults] {line}")
