"""Shared pieces of the engine tests: a fake clock, bundle builders, a host with foreign rules."""

import time

from rampart_agent.sample import make_bundle

FOREIGN = "-s 198.18.9.9/32 -j ACCEPT"


class FakeClock:
    def __init__(self):
        self.t = 1_000_000.0

    def time(self):
        return self.t

    def monotonic(self):
        return self.t

    def sleep(self, s):
        self.t += s


def bundle(rules=("-j ACCEPT",), extra_chain=None, v6=True, sets=None):
    chains = {"RPT-INPUT": list(rules)}
    if extra_chain:
        chains.update(extra_chain)
    spec = {"filter": {"chains": chains, "jumps": {"INPUT": ["RPT-INPUT"]}}}
    return make_bundle(v4=spec, v6=spec if v6 else None, sets=sets)


def jump_bundle(jumps, rules=("-j ACCEPT",)):
    chains = {name: list(rules) for name in ("RPT-INPUT", "RPT-OUTPUT")}
    return make_bundle(v4={"filter": {"chains": chains, "jumps": jumps}})


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
