"""Real kernel: the netlink set reader gives what `ipset save` gives, element for element.

A one-rule change reads the counters of the elements it deletes straight from the kernel
(rampart_agent/dataplane/ipset_netlink.py) instead of `ipset save`; the counts it credits
to rules must be the same. Each test fills sets of every type the compiler uses, in a
fresh `rpt_` namespace, and compares the reader's answer with `ipset save`'s, parsed by
the reader the agent used before.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from rampart_agent.dataplane import ipset_netlink
from rampart_agent.dataplane.iptables import IptablesDataplane
from rampart_agent.dataplane.save import parse_ipset_save
from rampart_agent.runner import Runner
from tests.support.netns import Netns, namespace, needs_netns

pytestmark = needs_netns

TYPES = {
    "n": "hash:net",
    "np": "hash:net,port",
    "ipn": "hash:ip,port,net",
    "ipi": "hash:ip,port,ip",
}
PROTOS = ("tcp", "udp", "sctp", "udplite")


def _net(rng: random.Random, v6: bool, host_share: float = 0.3) -> str:
    """An address or net of 198.18.0.0/15 (2001:2::/48), a fifth of them host-length."""
    if v6:
        base, bits, top = int(ipaddress.IPv6Address("2001:2::")), 128, 48
    else:
        base, bits, top = int(ipaddress.IPv4Address("198.18.0.0")), 32, 15
    length = bits if rng.random() < host_share else rng.randint(top + 1, bits - 1)
    addr = base + rng.getrandbits(bits - top)
    return str(ipaddress.ip_network((addr >> (bits - length) << (bits - length), length)))


def _value(rng: random.Random, kind: str, v6: bool) -> str:
    ip = _net(rng, v6, host_share=1.0).split("/")[0]
    port = f"{rng.choice(PROTOS)}:{rng.randint(0, 65535)}"
    if rng.random() < 0.05:  # a short range: the kernel keeps one element per port
        lo = rng.randint(1, 65000)
        port = f"{rng.choice(PROTOS)}:{lo}-{lo + rng.randint(1, 3)}"
    return {
        "n": lambda: _net(rng, v6),
        "np": lambda: f"{_net(rng, v6)},{port}",
        "ipn": lambda: f"{ip},{port},{_net(rng, v6)}",
        "ipi": lambda: f"{ip},{port},{_net(rng, v6, host_share=1.0).split('/')[0]}",
    }[kind]()


def fill(ns: Netns, count: int, seed: int) -> dict[str, str]:
    """One set of each type and family with `count` random elements, counters and rule
    tags; name -> type."""
    rng = random.Random(seed)
    lines, made = [], {}
    for short, kind in TYPES.items():
        for v6 in (False, True):
            name = f"rpt-nl-{short}{6 if v6 else 4}"
            family = "inet6" if v6 else "inet"
            lines.append(f"create {name} {kind} family {family} maxelem 262144 counters comment")
            for i in range(count):
                tag = f"rpt:{rng.randrange(16):08x}-aaaa-4000-8000-{i:012x}:0a1b2c3d"
                packets = rng.choice((0, 1, rng.getrandbits(40)))
                lines.append(
                    f"add {name} {_value(rng, short, v6)} packets {packets} "
                    f'bytes {packets * 60} comment "{tag}"'
                )
            made[name] = kind
    ns.run("ipset", "-exist", "restore", input="\n".join(lines) + "\n")
    return made


def saved(ns: Netns, name: str):
    return parse_ipset_save(ns.run("ipset", "save", name).stdout, [name])[name]


def elements(live) -> list[tuple]:
    return sorted((e.value, e.comment, e.packets, e.bytes) for e in live.elements)


def test_every_element_reads_as_ipset_save_lists_it_even_across_many_dump_messages():
    with namespace("nl") as ns:
        made = fill(ns, 3000, seed=16)
        for name, kind in made.items():
            live = ipset_netlink.read_set(name, ns.name)
            want = saved(ns, name)
            assert elements(live) == elements(want), name
            assert len(live.elements) > 2000  # many dump messages (a few hundred each)
            family = "inet6" if name.endswith("6") else "inet"
            assert live.create == f"create {name} {kind} family {family} counters comment"


def test_a_tagged_read_decodes_only_the_elements_of_those_rules():
    with namespace("nl") as ns:
        fill(ns, 400, seed=7)
        for name in ("rpt-nl-np4", "rpt-nl-ipn6"):
            whole = saved(ns, name).elements
            tags = sorted({e.comment.split(":")[1] for e in whole})[:2]
            live = ipset_netlink.read_set(name, ns.name, tags)
            want = [e for e in whole if e.comment.split(":")[1] in tags]
            assert want and elements(live) == sorted(
                (e.value, e.comment, e.packets, e.bytes) for e in want
            )
            assert ipset_netlink.read_set(name, ns.name, ["no-such-rule"]).elements == []


def test_a_missing_set_is_none_and_what_the_reader_cannot_spell_is_refused():
    with namespace("nl") as ns:
        assert ipset_netlink.read_set("rpt-nl-none", ns.name) is None
        # a namespace that is not there is not "no such set": the caller asks ipset save
        with pytest.raises(FileNotFoundError):
            ipset_netlink.read_set("rpt-nl-none", f"{ns.name}-gone")
        ns.run("ipset", "create", "rpt-nl-nm", "hash:net", "counters", "comment")
        ns.run("ipset", "add", "rpt-nl-nm", "198.18.7.0/24", "nomatch")
        with pytest.raises(ipset_netlink.Unreadable):
            ipset_netlink.read_set("rpt-nl-nm", ns.name)
        ns.run("ipset", "create", "rpt-nl-icmp", "hash:net,port", "counters", "comment")
        ns.run("ipset", "add", "rpt-nl-icmp", "198.18.7.0/24,icmp:echo-request")
        with pytest.raises(ipset_netlink.Unreadable):
            ipset_netlink.read_set("rpt-nl-icmp", ns.name)


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_the_dataplane_reads_by_netlink_and_falls_back_to_ipset_save_alike(backend):
    """Keyed reads (a one-rule change's) and whole reads (the status's) through a
    namespace runner: by netlink for sets it can spell, by `ipset save` for the others,
    the same answer either way."""
    with namespace("nl") as ns:
        made = fill(ns, 200, seed=3)
        ns.run("ipset", "create", "rpt-nl-icmp", "hash:net,port", "counters", "comment")
        ns.run(
            "ipset",
            "add",
            "rpt-nl-icmp",
            "198.18.7.0/24,icmp:echo-request",
            "comment",
            "rpt:00000001-aaaa-4000-8000-000000000001:0a1b2c3d",
        )
        dp = IptablesDataplane(backend, Runner(["ip", "netns", "exec", ns.name]))
        keys = {}
        for name in ("rpt-nl-np4", "rpt-nl-ipi6", "rpt-nl-icmp"):
            first = saved(ns, name).elements[0]
            keys[name] = {first.value: first.comment.split(":")[1]}
        got = dp.read_sets(sorted(keys), keys=keys)
        for name, want in keys.items():
            value = next(iter(want))
            assert value in {e.value for e in got[name].elements}, name
            same = [e for e in got[name].elements if e.value == value]
            assert elements(type(got[name])("", same)) == elements(
                type(got[name])("", [e for e in saved(ns, name).elements if e.value == value])
            )
        # every set, as the status reads them (more than CHAIN_READS): netlink for eight,
        # `ipset save` for the one it cannot spell; a set that is not there is left out
        names = [*made, "rpt-nl-icmp", "rpt-nl-gone"]
        every = dp.read_sets(names)
        assert sorted(every) == sorted(names[:-1])
        for name in names[:-1]:
            assert elements(every[name]) == elements(saved(ns, name)), name
            assert "counters comment" in every[name].create
        # a runner this reader cannot follow into its namespace: `ipset save` alone, one
        # per set for a few, one for them all beyond CHAIN_READS
        sudo_like = IptablesDataplane(backend, Runner(["env", "ip", "netns", "exec", ns.name]))
        assert sudo_like.runner.netns() == (False, None)
        whole = sudo_like.read_sets(["rpt-nl-n4"])
        assert elements(whole["rpt-nl-n4"]) == elements(saved(ns, "rpt-nl-n4"))
        assert {n: elements(s) for n, s in sudo_like.read_sets(names).items()} == {
            n: elements(s) for n, s in every.items()
        }
