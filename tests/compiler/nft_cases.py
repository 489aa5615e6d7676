"""A hand-built IR program using every field the chain model has (for the nft renderer's
golden test and its `nft -c` check): states, limits, log, every reject type, time, hop
limit, addrtype, ICMP types, negation, interface wildcards, sets, every NAT target."""

from __future__ import annotations

from datetime import UTC, datetime

from compiler import nets as N
from compiler.ir import (
    ACCEPT,
    DNAT,
    DROP,
    JUMP,
    LOG,
    MASQUERADE,
    REJECT,
    SNAT,
    AddrMatch,
    Chain,
    IpSet,
    LookupSet,
    PortElem,
    Program,
    Rule,
    SetElement,
    Table,
)
from compiler.values import REJECT_WITH

UNTIL = datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC)
T1 = "rpt:0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1:5cfba2d6"
T2 = "rpt:65682938-213b-5d55-bdaf-167fa8afa8f2:8f2a1371"
U1, U3 = T1.split(":")[1], "25bd89e3-dbc7-5fdc-aada-5fe9232c17d4"


def _net(text: str) -> AddrMatch:
    return AddrMatch(N.parse(text))


T3 = "rpt:25bd89e3-dbc7-5fdc-aada-5fe9232c17d4:845bcb4c"


def lookups() -> list[LookupSet]:
    """Set-compiled blocks: a 4-dimension set with ranges and CIDRs, a one-dimension set,
    a host-port-net set, and a tcp-only set behind a tcp-reset reject."""
    net = N.parse
    return [
        LookupSet(
            "rpt-4spd-0000000000000001",
            4,
            "spd",
            [
                SetElement(
                    (net("198.18.0.0/24")[0], PortElem("tcp", 80, 90), net("198.18.1.0/24")[0]),
                    T1,
                    U1,
                ),
                SetElement(
                    (net("198.18.5.5/32")[0], PortElem("udp", 53, 53), net("198.19.0.0/16")[0]),
                    T3,
                    U3,
                ),
            ],
        ),
        LookupSet(
            "rpt-4s-0000000000000002", 4, "s", [SetElement((net("198.18.9.0/24")[0],), T1, U1)]
        ),
        LookupSet(
            "rpt-6hps-0000000000000003",
            6,
            "hps",
            [
                SetElement(
                    (
                        net("2001:2::5/128")[0],
                        PortElem("tcp", 443, 443),
                        net("2001:2:0:30::/64")[0],
                    ),
                    T1,
                    U1,
                )
            ],
        ),
        LookupSet(
            "rpt-4dp-0000000000000004",
            4,
            "dp",
            [SetElement((net("198.18.7.0/24")[0], PortElem("tcp", 1000, 2000)), T3, U3)],
        ),
    ]


def every_field() -> Program:
    set4 = IpSet("rpt-4-000000000001", 4, N.parse("198.18.20.0/24") + N.parse("198.18.22.7/32"))
    set6 = IpSet("rpt-6-000000000002", 6, N.parse("2001:2:0:30::/64"))
    empty = IpSet("rpt-4-000000000003", 4, ())
    spd, s1, hps, dp = lookups()
    rules4 = [
        Rule(ACCEPT, "rpt:sys:loopback", in_iface="lo"),
        Rule(ACCEPT, "rpt:sys:conntrack", states=("RELATED", "ESTABLISHED")),
        Rule(DROP, "rpt:sys:conntrack", states=("INVALID",)),
        Rule(
            ACCEPT,
            "rpt:sys:mgmt",
            src=_net("198.18.0.1/32"),
            proto="tcp",
            dports=((22, 22), (8745, 8745)),
        ),
        Rule(
            ACCEPT,
            T1,
            src=_net("198.18.0.0/24"),
            dst=AddrMatch(N.parse("198.18.1.10/31"), negate=True),
            in_iface="eth+",
            proto="tcp",
            sports=((1024, 65535),),
            dports=((80, 80), (8443, 8445)),
            states=("NEW", "UNTRACKED"),
            rule_id="0b6c6a4e-1f5e-4a43-9d53-3a3f7cf0a0a1",
        ),
        Rule(ACCEPT, T1, src=AddrMatch(set4.nets, set_name=set4.name), proto="udp"),
        Rule(DROP, T1, dst=AddrMatch(set4.nets, negate=True, set_name=set4.name)),
        Rule(DROP, T1, src=AddrMatch((), set_name=empty.name), out_iface="veth0"),
        Rule(ACCEPT, T2, proto="icmp", icmp_type=8, limit="10/second", burst=20),
        Rule(LOG, T2, proto="tcp", dports=((22, 22),), limit="10/minute", arg="rpt:65682938 "),
        # rate_limit: the rule's one named bucket (a `limit` object of the table)
        Rule(ACCEPT, T2, proto="udp", dports=((53, 53),), limit="3/hour", shared_limit="rprabc"),
        Rule(ACCEPT, T2, proto="tcp", dports=((22, 22),), until=UNTIL),
        *(
            Rule(REJECT, T2, proto="tcp", dports=((7000 + i, 7000 + i),), arg=kind)
            for i, kind in enumerate((None, *REJECT_WITH))
        ),
        Rule(ACCEPT, f"rpt:sys:set:{spd.name}", lookup=spd),
        Rule(DROP, f"rpt:sys:set:{s1.name}", lookup=s1),
        Rule(REJECT, f"rpt:sys:set:{dp.name}", arg="tcp-reset", lookup=dp),
        Rule(JUMP, "rpt:jump", arg="RPT-I-web-0001"),
        Rule(DROP, "rpt:sys:default"),
    ]
    rules6 = [
        Rule(ACCEPT, "rpt:sys:icmpv6-nd", proto="icmpv6", icmp_type=135, hop_limit=255),
        Rule(ACCEPT, T1, src=AddrMatch(set6.nets, set_name=set6.name), proto="icmpv6"),
        *(
            Rule(REJECT, T2, proto="tcp", dports=((7000 + i, 7000 + i),), arg=kind)
            for i, kind in enumerate((None, *REJECT_WITH))
        ),
        Rule(ACCEPT, f"rpt:sys:set:{hps.name}", lookup=hps),
        Rule(REJECT, "rpt:sys:default"),
    ]
    filter4 = Table(
        4,
        "filter",
        jumps={b: [Rule(JUMP, "rpt:jump", arg=f"RPT-{b}")] for b in ("INPUT", "FORWARD")},
        chains={
            "RPT-INPUT": Chain("RPT-INPUT", rules4),
            "RPT-FORWARD": Chain("RPT-FORWARD", [Rule(DROP, "rpt:sys:default")]),
            "RPT-I-web-0001": Chain("RPT-I-web-0001", [Rule(ACCEPT, T1, proto="tcp")]),
        },
    )
    filter6 = Table(
        6,
        "filter",
        jumps={"INPUT": [Rule(JUMP, "rpt:jump", arg="RPT-INPUT")]},
        chains={"RPT-INPUT": Chain("RPT-INPUT", rules6)},
    )
    nat4 = Table(
        4,
        "nat",
        jumps={
            b: [Rule(JUMP, "rpt:jump", arg=f"RPT-{b}")]
            for b in ("PREROUTING", "OUTPUT", "POSTROUTING")
        },
        chains={
            "RPT-PREROUTING": Chain(
                "RPT-PREROUTING",
                [
                    Rule(
                        "RETURN",
                        "rpt:sys:mgmt",
                        src=_net("198.18.0.1/32"),
                        proto="tcp",
                        dports=((22, 22),),
                        dst_type="LOCAL",
                    ),
                    Rule(
                        DNAT,
                        T1,
                        in_iface="eth0",
                        proto="tcp",
                        dports=((80, 80),),
                        arg=("198.18.50.10:8000"),
                    ),
                ],
            ),
            "RPT-OUTPUT": Chain(
                "RPT-OUTPUT", [Rule(DNAT, T1, proto="udp", dports=((53, 53),), arg="198.18.50.53")]
            ),
            "RPT-POSTROUTING": Chain(
                "RPT-POSTROUTING",
                [
                    Rule(SNAT, T2, src=_net("198.18.50.0/24"), out_iface="eth0", arg="198.18.51.1"),
                    Rule(MASQUERADE, T2, out_iface="wan+"),
                ],
            ),
        },
    )
    nat6 = Table(
        6,
        "nat",
        jumps={"OUTPUT": [Rule(JUMP, "rpt:jump", arg="RPT-OUTPUT")]},
        chains={
            "RPT-OUTPUT": Chain(
                "RPT-OUTPUT",
                [Rule(DNAT, T1, proto="udp", dports=((53, 53),), arg="[2001:2:0:50::53]:5353")],
            )
        },
    )
    return Program(
        device="every",
        tables={(4, "filter"): filter4, (6, "filter"): filter6, (4, "nat"): nat4, (6, "nat"): nat6},
        sets={s.name: s for s in (set4, set6, empty)},
        rules={},
        lookups={s.name: s for s in sorted((spd, s1, hps, dp), key=lambda s: s.name)},
    )
