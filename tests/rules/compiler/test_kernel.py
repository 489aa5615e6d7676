"""Every bundle the compiler tests produce loads into a real kernel, and reads back as
written (so the agent can compare `iptables-save` output with the bundle line by line)."""

from __future__ import annotations

import pytest

from rules.compiler import CompileOptions, PolicyDocument, compile_device
from tests.support.netns import namespace, needs_netns

from . import cases
from .kernel import load, rules_by_chain, saved_rules

pytestmark = needs_netns


def _bundle(case: str, options: CompileOptions | None = None):
    build, device = cases.CASES[case]
    return compile_device(PolicyDocument.from_dict(build()), device, options=options,
                          now=cases.NOW)


@pytest.mark.parametrize("case", sorted(cases.CASES))
@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_bundle_loads_and_reads_back(case, backend):
    bundle = _bundle(case)
    with namespace("cpld") as ns:
        load(ns, bundle, backend)
        for family, text in ((4, bundle.iptables_v4), (6, bundle.iptables_v6)):
            assert saved_rules(ns, family, backend) == rules_by_chain(text)
        sets = ns.run("ipset", "list", "-n").stdout.split()
        assert sorted(sets) == sorted(bundle.sets)


def test_inlined_everything_loads():
    """The same policies with ipsets switched off (threshold above every group) load too."""
    bundle = _bundle("sets_and_ports", CompileOptions(ipset_threshold=1000))
    # negated lists of several networks still need a set ("in none of them"); nothing else
    set_lines = [line for line in bundle.iptables_v4.splitlines() if "--match-set" in line]
    assert set_lines and all("! --match-set" in line for line in set_lines)
    with namespace("cpin") as ns:
        load(ns, bundle)


@pytest.mark.slow
def test_100k_group_loads_with_sized_set():
    bundle = compile_device(PolicyDocument.from_dict(cases.big_group()), "edge", now=cases.NOW)
    (meta,) = bundle.sets.values()
    assert meta["entries"] == 100_000 and meta["maxelem"] >= 100_000
    with namespace("cpbg") as ns:
        load(ns, bundle)
        name = next(iter(bundle.sets))
        header = ns.run("ipset", "list", "-t", name).stdout
        assert "Number of entries: 100000" in header
