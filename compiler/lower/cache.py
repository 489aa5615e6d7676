"""What lowering built per rule set, kept between compiles in this process."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from ..ir import Chain, IpSet, RuleInfo


class Built(NamedTuple):
    """What lowering built for one rule set (an entry of `RulesetCache`)."""

    exact: tuple  # (rules, which expiring rules are active, the document's objects)
    chains: dict[int, dict[str, Chain]]
    infos: dict[str, RuleInfo]
    sets: dict[str, IpSet]
    memo: dict[str, tuple]  # rule id -> (rule, kernel rules per family, set names)
    # (family, chain) -> what its set-compiled block pass leaves for the next (blocks.Blocks)
    blocks: dict = {}  # (never mutated: a NamedTuple default)


class RulesetCache:
    """What lowering built per rule set, kept for the next compiles in this process.

    A rule set's chains are the same on every device and from one deploy to the next, so
    a deploy to a device group, a redeploy, a preview or a trace reuse them (and the
    renderer's text of them, see `Chain.memo`) instead of lowering and rendering every rule
    again; after an edit, the unchanged rules and segments are reused. An entry is found by
    rule set name and options, and used whole only if everything its chains depend on is
    equal: the rules, which of its expiring rules are still active, and the document's
    objects (rules alone if only they differ). Comparing is cheap when they are the very
    same objects (the parsed document is cached per deployment), a linear scan otherwise;
    a cold compile never hashes 50k rules. Least recently used entries go first once more
    than `max_rules` kernel rules are kept.
    """

    def __init__(self, max_rules: int = 300_000) -> None:
        self.max_rules = max_rules
        self._entries: OrderedDict[tuple, tuple[Built, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Built | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: tuple, value: Built, size: int) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]
            if size > self.max_rules:
                return
            self._entries[key] = (value, size)
            self._size += size
            while self._size > self.max_rules:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0


RULESET_CACHE = RulesetCache()
