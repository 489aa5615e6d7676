"""The dataplane interface the apply engine uses, and what a read of the kernel returns.

Implementations: `IptablesDataplane` (iptables.py) on a real host, `RecordingDataplane`
(recording.py) in memory for demos, fleet benchmarks and fast tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from rampart_agent.ruleset import CHAIN_PREFIX, LiveJump


class DataplaneError(Exception):
    """The kernel (or the tool in front of it) refused a change; nothing of it was applied."""


@dataclass
class LiveRule:
    text: str  # the rule spec after `-A CHAIN ` (iptables-save form; best effort via iptc)
    comment: str | None
    target: str | None
    packets: int = 0
    bytes: int = 0


@dataclass
class LiveTable:
    """What one table holds that concerns us: our chains and the built-in chains."""

    chains: dict[str, list[LiveRule]] = field(default_factory=dict)  # RPT- chains only
    builtins: dict[str, list[LiveRule]] = field(default_factory=dict)

    def jumps(self) -> dict[str, list[LiveJump]]:
        out: dict[str, list[LiveJump]] = {}
        for name, rules in self.builtins.items():
            found = [
                LiveJump(i, r.target)
                for i, r in enumerate(rules, 1)
                if r.target and r.target.startswith(CHAIN_PREFIX)
            ]
            if found:
                out[name] = found
        return out


LiveFamily = dict[str, LiveTable]


@dataclass
class LiveElement:
    """One element of a set as `ipset save` lists it (a port range is one per port)."""

    value: str
    comment: str | None = None
    packets: int = 0
    bytes: int = 0


@dataclass
class LiveSet:
    """One of our sets in the kernel: its header (`create` line) and its elements."""

    create: str
    elements: list[LiveElement] = field(default_factory=list)


@dataclass
class PendingRestore:
    """A restore under way (see `Dataplane.begin_restore`)."""

    commit: Callable[[str], None]
    abort: Callable[[], None]


class Dataplane:
    """The interface the apply engine uses; one instance per host (or fake host)."""

    name = "abstract"
    backend = "none"
    inplace_limit = 1 << 30  # longest chain edited in place rather than rewritten
    # True: the kernel takes one whole script per apply (`load_script`; nft.py), not
    # per-family restore payloads and ipsets (transition.py takes the script path)
    loads_script = False
    activity = ""  # what a change under way waits for ("": nothing); shown by the status

    def await_kernel_lock(self, timeout: float) -> float:
        """Before a change: wait (saying so in `activity`) until no other program holds
        the lock the tools need; the seconds waited. Raises DataplaneError after
        `timeout`, nothing changed."""
        return 0.0

    @property
    def reads_jumps_in_process(self) -> bool:
        """True when reading the built-in chains costs no fork (the apply path then reads
        them before every incremental apply; otherwise it trusts its record)."""
        return False

    def read(self, family: str, tables: Iterable[str] | None = None) -> LiveFamily:
        raise NotImplementedError

    def read_jumps(
        self, family: str, table: str, builtins: Iterable[str]
    ) -> dict[str, list[LiveJump]]:
        """Our jump rules in the given built-in chains of one table."""
        live = self.read(family, [table]).get(table)
        wanted = set(builtins)
        return {b: j for b, j in (live.jumps() if live else {}).items() if b in wanted}

    def read_chains(
        self, family: str, table: str, chains: Iterable[str]
    ) -> dict[str, list[LiveRule]]:
        """Our rules (with their counters) in the given chains of one table; a chain that
        is not there is absent from the answer."""
        live = self.read(family, [table]).get(table)
        found = live.chains if live else {}
        return {name: found[name] for name in chains if name in found}

    def restore(self, family: str, payload: str) -> None:
        raise NotImplementedError

    def begin_restore(self, family: str, head: str) -> PendingRestore:
        """Start a restore with the first part of its payload (up to, not including, its
        first COMMIT); `commit(rest)` finishes it, `abort()` drops it unapplied. The real
        dataplane's tool parses `head` while the caller does other work."""
        return PendingRestore(lambda rest: self.restore(family, head + rest), lambda: None)

    def ipset_list(self) -> dict[str, int]:
        """Existing sets with our prefix -> number of entries."""
        raise NotImplementedError

    def ipset_restore(self, payload: str) -> None:
        raise NotImplementedError

    def begin_ipset_restore(self, payload: str) -> PendingRestore:
        """Start `ipset -exist restore` of `payload`, working on it in the background;
        `commit("")` waits for it to end (and raises if it failed), `abort()` stops it."""
        return PendingRestore(lambda rest: self.ipset_restore(payload + rest), lambda: None)

    def ipset_destroy(self, names: Iterable[str]) -> list[str]:
        """Destroy sets; return those that could not be (still referenced)."""
        raise NotImplementedError

    def load_script(self, script: str | None) -> None:
        """Replace everything of ours with `script` in one transaction (None: remove it)."""
        raise NotImplementedError

    def update_elements(
        self,
        old_script: str,
        new_script: str,
        before_kernel: Callable[[], None],
        lost: dict[str, list[int]] | None,
    ) -> bool:
        """Turn the kernel from `old_script` into `new_script` by set element changes
        alone, adding the counts they take to `lost`; False (nothing done) when more than
        elements differ."""
        return False

    def element_counts(self) -> dict[str, list[int]]:
        """Set element counters summed per rule uuid ([packets, bytes]; set-compiled
        blocks count per element, each tagged with its rule)."""
        return {}

    def read_sets(
        self, names: Iterable[str] | None = None, keys: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, LiveSet]:
        """Our sets with their elements and element counters (None: every set of ours);
        a set that is not there is absent from the answer. `keys`: of the sets it names,
        only these elements are needed (the others may be left out); given as a mapping
        element -> the rule uuid its comment carries, a reader may find them by that tag."""
        return {}

    def keep_tools_ready(self, ready: bool = True) -> None:
        """A serving agent keeps its restore tools started and waiting between applies."""

    def busy(self) -> contextlib.AbstractContextManager[None]:
        """An apply is under way: replace the tools it used only after it."""
        return contextlib.nullcontext()

    def other_backend_leftovers(self) -> dict[str, list[str]]:
        """RPT- chains of ours found in the other iptables backend ("v4:filter" -> names)."""
        return {}

    def cleanup_other_backend(self) -> dict[str, list[str]]:
        return {}

    def facts(self) -> dict[str, str]:
        return {"iptables_version": "", "backend": self.backend}
