"""Which ipset set types this host's kernel has: a fact the console compiles by.

The console compiles runs of rules into set lookups (docs/compiler.md, "Set-compiled rule
runs") of the types listed here, so a bundle never names a type the kernel lacks (on some
kernels `hash:net,net` and `hash:net,port,net` are missing though `ipset` knows them). The
only reliable test is the kernel's own answer: create a throwaway set of each type, with
the `counters` and `comment` options the compiled sets use, and destroy it again.
"""

from __future__ import annotations

import os
import weakref

from rampart_agent.runner import Runner
from rampart_contract.naming import SET_PREFIX

PROBED = (
    "hash:net",
    "hash:net,port",
    "hash:ip,port,net",
    "hash:ip,port,ip",
    "hash:net,net",
    "hash:net,port,net",
)
# per runner (a namespace's, the host's): a kernel's set types do not change while it runs
_found: weakref.WeakKeyDictionary[Runner, str] = weakref.WeakKeyDictionary()


def ipset_types(runner: Runner) -> str:
    """The types of PROBED this kernel creates (with counters and comment), space-separated
    (facts are strings); "" without ipset. Probed once per runner."""
    found = _found.get(runner)
    if found is None:
        name = f"{SET_PREFIX}probe-{os.getpid()}"
        ok = []
        for kind in PROBED:
            try:
                res = runner.run(
                    ["ipset", "create", name, kind, "counters", "comment"], check=False
                )
            except OSError:  # no ipset binary
                break
            if res.returncode == 0:
                ok.append(kind)
                runner.run(["ipset", "destroy", name], check=False)
        found = _found[runner] = " ".join(ok)
    return found
