"""The ipset types fact: what this kernel really creates (with counters and comment)."""

from __future__ import annotations

from rampart_agent.dataplane.iptables import IptablesDataplane
from rampart_agent.ipset_types import PROBED
from rampart_agent.runner import Runner
from tests.support.netns import namespace, needs_netns

pytestmark = needs_netns

# in every kernel the compiler supports; others (hash:net,net...) depend on the kernel
ALWAYS = {"hash:net", "hash:net,port", "hash:ip,port,net", "hash:ip,port,ip"}


def test_facts_report_the_types_the_kernel_creates():
    with namespace("ipt") as ns:
        runner = Runner(prefix=["ip", "netns", "exec", ns.name])
        facts = IptablesDataplane("legacy", runner).facts()
        types = facts["ipset_types"].split()
        assert ALWAYS <= set(types) <= set(PROBED)
        assert ns.run("ipset", "list", "-n").stdout.strip() == ""  # the probe set is gone
        for kind in set(PROBED) - set(types):  # what it leaves out, the kernel refuses
            made = ns.run("ipset", "create", "rpt-t", kind, "counters", "comment", check=False)
            assert made.returncode != 0
