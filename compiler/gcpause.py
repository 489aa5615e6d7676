"""Pausing the cyclic garbage collector around bulk work (parsing, compiling)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Parsing and compiling allocate ~10 objects per rule and make no cycles: the cyclic
    collector would rescan them over and over (20-25 % of a 50k-rule compile), so pause it.

    Re-enabling alone is not enough: the first allocation afterwards runs a young-generation
    collection over every object made meanwhile (~60 ms after a 50k-rule compile), nearly
    all of them alive in the result (document or bundle). `freeze()` + `unfreeze()` moves them, unscanned, straight to
    the oldest generation, where they would have ended anyway. Skipped when the process
    itself uses `gc.freeze()` (pre-fork servers), whose frozen objects must stay frozen.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()
