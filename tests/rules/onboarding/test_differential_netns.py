"""The differential onboarding suite (`make test-onboarding`, marker `differential`).

For each kind of host — ufw, firewalld (iptables and nftables backends), shorewall, a
Docker host, a hand-written gateway and bastion — the real tool builds the original host in `rpt_`
namespaces; its dumps are onboarded, compiled and applied by the real agent on a fresh
host (differential.py); the same TCP/UDP/ICMP probes, IPv4 and IPv6, from three sources, to
the host (INPUT) and through it (FORWARD), go to both; every verdict must agree, or the
import report must flag the disagreement as verdict-changing. The last test prints and
writes (var/onboarding-differential.txt) the agreement table and requires >= 99.5 %.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.netns import needs_netns

from .differential import (
    BACKEND,
    CLASSES,
    HOST4,
    HOST6,
    SOURCES,
    Dumps,
    Outcome,
    Ports,
    Site,
    burst,
    compare,
    dump_host,
    listen,
    migrate,
    onboard,
    probe_both,
    site,
    table,
)
from .dumps import BASTION, DOCKER_HOST, DOCKER_IPSETS, ROUTER_V4, ROUTER_V6
from .hosts import (
    SHOREWALL_RULES,
    firewalld_host,
    firewalld_options,
    needs,
    restore_host,
    shorewall_host,
    ufw_commands,
    ufw_host,
)

pytestmark = [*needs_netns, pytest.mark.differential, pytest.mark.django_db]

TARGET = 99.5
REPORT = Path(__file__).resolve().parents[3] / "var" / "onboarding-differential.txt"
OUTCOMES: dict[str, Outcome] = {}
ADMIN, OTHER, OUTSIDE = SOURCES[4]
ADMIN6, OTHER6, OUTSIDE6 = SOURCES[6]


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[[Site, Path], None]  # writes the original host's firewall
    ports: Ports
    lan: str = "lan0"
    fallthrough: bool = False
    # what stays on the migrated host besides the agent (Docker's own chains)
    keep: Callable[[Site], None] | None = None
    # bursts to the host, after the first round: (proto, port, count), from ADMIN/ADMIN6
    bursts: tuple[tuple[str, int, int], ...] = ()


def build_ufw(s: Site, tmp: Path) -> None:
    extra = [
        ["allow", "from", OTHER6, "to", "any", "port", "8443", "proto", "tcp"],
        # a routed rule (ufw-user-forward): the backend's web port, from one source
        ["route", "allow", "in", "on", "eth0", "out", "on", "lan0", "from", OTHER, "to",
         BACKEND[4], "port", "80", "proto", "tcp"],
    ]  # fmt: skip
    ufw_host(s.host, tmp, [*ufw_commands(ADMIN, "eth0"), *extra])


def build_firewalld(backend: str) -> Callable[[Site, Path], None]:
    def build(s: Site, tmp: Path) -> None:
        firewalld_host(
            s.host,
            tmp,
            [
                *firewalld_options(ADMIN),
                "--add-rich-rule=rule family=ipv4 source address=198.19.200.0/24 drop",
                # a port forward to the backend, and masquerading (the nat table)
                f"--add-forward-port=port=8081:proto=tcp:toport=80:toaddr={BACKEND[4]}",
                "--add-masquerade",
                f"--add-rich-rule=rule family=ipv6 source address={OTHER6} port port=9100 "
                "protocol=tcp accept",
            ],
            backend=backend,
        )

    return build


def build_shorewall(s: Site, tmp: Path) -> None:
    shorewall_host(
        s.host,
        tmp,
        zones="fw\tfirewall\nnet\tipv4\nloc\tipv4\n",
        interfaces="?FORMAT 2\nnet\teth0\ttcpflags,nosmurfs\nloc\tlan0\t-\n",
        policy="$FW\tall\tACCEPT\nloc\tnet\tACCEPT\nnet\tall\tDROP\nall\tall\tREJECT\n",
        # a port forward from the net to the backend in loc (the nat table)
        rules=SHOREWALL_RULES.format(client=ADMIN) + f"DNAT\tnet\tloc:{BACKEND[4]}:80\ttcp\t8082\n",
    )


# the admin's own rule in DOCKER-USER: OTHER's forwarded traffic is dropped
DOCKER = DOCKER_HOST.replace(
    "-A DOCKER-USER -j RETURN", f"-A DOCKER-USER -s {OTHER}/32 -j DROP\n-A DOCKER-USER -j RETURN"
)
DOCKER_SETS = DOCKER_IPSETS.format(admin=OTHER, blocked=OUTSIDE)


def _dockers(chain: str, line: str) -> bool:
    if chain == "DOCKER-USER":
        return line == "-A DOCKER-USER -j RETURN"  # what Docker puts there
    return chain == "FORWARD" or chain.startswith("DOCKER")


def docker_own(dump: str) -> str:
    """What Docker itself writes on the migrated host: its nat table and chains, FORWARD,
    an empty DOCKER-USER; not the admin's INPUT rules."""
    out, table_ = [], ""
    for line in dump.splitlines():
        if line.startswith("*"):
            table_ = line[1:]
        words = line.split()
        if table_ == "nat" or line.startswith(("*", "COMMIT", "#")):
            out.append(line)
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name == "INPUT":
                out.append(":INPUT ACCEPT [0:0]")
            elif name in ("FORWARD", "OUTPUT") or name.startswith("DOCKER"):
                out.append(line)
        elif _dockers(words[1], line):
            out.append(line)
    return "\n".join(out) + "\n"


KINDS = [
    Kind(
        "ufw",
        build_ufw,
        Ports(tcp=(22, 23, 25, 80, 2222, 8080, 8443, 9000), udp=(23, 53, 5353)),
        bursts=(("tcp", 2222, 8),),  # ufw limit: 6 new connections in 30 s per source
    ),
    Kind(
        "firewalld-iptables",
        build_firewalld("iptables"),
        Ports(tcp=(22, 80, 7000, 8080, 8081, 9100), udp=(53, 5299, 5305)),
    ),
    Kind(
        "firewalld-nftables",
        build_firewalld("nftables"),
        Ports(tcp=(22, 80, 7000, 8080, 8081, 9100), udp=(53, 5299, 5305)),
    ),
    Kind(
        "shorewall",
        build_shorewall,
        Ports(tcp=(22, 25, 80, 8080, 8082, 9100, 9200), udp=(53, 5305, 9999)),
    ),
    Kind(
        "docker",
        lambda s, _tmp: restore_host(s.host, DOCKER, DOCKER_SETS),
        Ports(tcp=(22, 23, 80, 443, 3306, 8080), udp=(53, 5000), fwd_tcp=(22, 80)),
        lan="docker0",
        fallthrough=True,
        keep=lambda s: restore_host(s.host, docker_own(DOCKER)),
    ),
    Kind(
        "router",
        lambda s, _tmp: restore_host(
            s.host, ROUTER_V4.format(lan="lan0"), dump6=ROUTER_V6.format(lan="lan0")
        ),
        Ports(tcp=(22, 80, 443, 2200, 8000), udp=(53, 123), fwd_tcp=(22, 80), fwd_udp=(53,)),
        bursts=(("tcp", 22, 6),),  # hashlimit: 3 per minute per source, burst 3
    ),
    Kind(
        "bastion",
        lambda s, _tmp: restore_host(s.host, BASTION.format(admins="198.18.40.0/26")),
        Ports(tcp=(22, 25, 80, 8745), udp=(53, 5000)),
    ),
]


def in_order(found: list[str], count: int) -> list[str]:
    """Each burst's verdicts sorted, so two bursts compare by how many got each verdict."""
    chunks = [sorted(found[i : i + count], key=CLASSES.index) for i in range(0, len(found), count)]
    return [v for chunk in chunks for v in chunk]


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_migrated_host_answers_as_the_original(kind: Kind, api, tmp_path, root_untouched):
    needs("iptables-save", "ip6tables-save", "ipset", "ping")
    with (
        site(kind.name[:3] + "o", kind.lan) as original,
        site(kind.name[:3] + "m", kind.lan) as new,
    ):
        kind.build(original, tmp_path)
        dumps: Dumps = dump_host(original.host)
        for name in ("v4", "v6", "ipsets", "nft_json"):  # for a failure's post-mortem
            (tmp_path / f"dump-{name}.txt").write_text(getattr(dumps, name))
        reports = onboard(api, kind.name, dumps)
        if kind.keep:
            kind.keep(new)
        migrate(api, kind.name, reports, new, tmp_path, fallthrough=kind.fallthrough)
        listen(original, kind.ports)
        listen(new, kind.ports)
        sample = kind.ports.probes()
        before, after = probe_both(original, new, sample)
        for n, (proto, port, count) in enumerate(kind.bursts):
            extra = burst(ADMIN, HOST4, proto, port, count) + burst(
                ADMIN6, HOST6, proto, port, count
            )
            b, a = probe_both(original, new, extra, base=30000 + 2000 * n)
            # which of simultaneous connections a limit refuses is a race: compare counts
            b, a = in_order(b, count), in_order(a, count)
            sample, before, after = sample + extra, before + b, after + a
    outcome = compare(kind.name, sample, before, after, reports)
    OUTCOMES[kind.name] = outcome
    (tmp_path / "reports.json").write_text(json.dumps(reports, indent=1))
    assert {"accepted", "dropped-timeout"} <= set(before), f"a sample needs both: {before}"
    assert not outcome.unflagged, table([outcome])


def test_agreement_table():
    """Runs after the host kinds (file order): the table, and the target overall."""
    if not OUTCOMES:
        pytest.skip("no host kind ran (see their skip reasons)")
    text = table(list(OUTCOMES.values()))
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(text + "\n")
    print("\n" + text)
    total = sum(o.probes for o in OUTCOMES.values())
    agree = sum(o.agree for o in OUTCOMES.values())
    assert 100.0 * agree / total >= TARGET, text
