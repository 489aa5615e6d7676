"""Onboarding real firewalls: each tool writes its rules inside an `rpt_` namespace (never
the root one), the dump is translated and imported, and for a sample of real TCP/UDP probes
the kernel's verdict on the original rules equals the tracer's on the imported rule set.

How each dump is produced (all inside the server namespace of a `host_pair`): see hosts.py.
"""

from __future__ import annotations

import re

import pytest

from tests.support.netns import host_pair, needs_netns

from .dumps import DOCKER_HOST, DOCKER_IPSETS
from .equivalence import check_equivalence, probes, root_firewall
from .hosts import (
    SHOREWALL_RULES,
    firewalld_host,
    firewalld_options,
    restore_host,
    shorewall_host,
    ufw_commands,
    ufw_host,
)

pytestmark = [*needs_netns, pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def root_untouched():
    before = root_firewall()
    yield
    assert root_firewall() == before, "the root namespace's firewall changed"


def assert_equivalent(table: dict) -> None:
    differ = {k: v for k, v in table.items() if v[0] != v[1]}
    assert not differ, f"kernel vs tracer differ (kernel, tracer): {differ}; all: {table}"
    assert {k for k, _ in table.values()} == {True, False}, (
        f"the sample needs both verdicts: {table}"
    )


def assert_every_line_accounted(result, dump: str) -> None:
    rules = {n for n, line in enumerate(dump.splitlines(), 1) if re.match(r"^-A ", line)}
    done = set(result.translated) | set(result.nat_translated)
    done |= {s.line for s in result.skipped if s.source == "iptables-save"}
    assert rules <= done, f"lines neither translated nor reported: {sorted(rules - done)}"


def test_ufw_dump_imports_and_matches_the_kernel(tmp_path, root_untouched):
    with host_pair("pcuf") as (client, server):
        ufw_host(server, tmp_path, ufw_commands(client.addr4, server.dev))
        sample = probes(
            tcp=[22, 23, 25, 80, 139, 445, 2222, 8080, 9000], udp=[23, 53, 137, 5353, 9999]
        )
        result, table, dump = check_equivalence(client, server, sample, ruleset="ufw-host")
    assert_equivalent(table)
    assert_every_line_accounted(result, dump)
    # ufw limit: imported as rate_limit_per_source, the window → bucket difference noted
    # with its verdict class (test_onboarding_limits_netns.py probes it)
    recent = [n for n in result.notes if "-m recent (at most 5" in n.reason]
    assert recent and all(n.impact == "more permissive" for n in recent)
    assert not [s for s in result.skipped if "-m recent" in s.reason]


def test_firewalld_dump_imports_and_matches_the_kernel(tmp_path, root_untouched):
    with host_pair("pcfw") as (client, server):
        firewalld_host(server, tmp_path, firewalld_options(client.addr4))
        sample = probes(tcp=[22, 80, 7000, 8080, 9100], udp=[53, 5299, 5305])
        result, table, dump = check_equivalence(client, server, sample, ruleset="firewalld-host")
    assert_equivalent(table)
    assert_every_line_accounted(result, dump)


def test_shorewall_dump_imports_and_matches_the_kernel(tmp_path, root_untouched):
    with host_pair("pcsw") as (client, server):
        shorewall_host(
            server,
            tmp_path,
            zones="fw\tfirewall\nnet\tipv4\n",
            interfaces=f"?FORMAT 2\nnet\t{server.dev}\ttcpflags,nosmurfs\n",
            policy="$FW\tnet\tACCEPT\nnet\tall\tDROP\nall\tall\tREJECT\n",
            rules=SHOREWALL_RULES.format(client=client.addr4),
        )
        sample = probes(tcp=[22, 25, 80, 8080, 9100, 9200], udp=[53, 5305, 9999])
        result, table, dump = check_equivalence(client, server, sample, ruleset="shorewall-host")
    assert_equivalent(table)
    assert_every_line_accounted(result, dump)


def test_docker_style_host_imports_the_admins_rules_and_matches_the_kernel(root_untouched):
    with host_pair("pcdk") as (client, server):
        ipsets = DOCKER_IPSETS.format(admin=client.addr4, blocked="198.19.66.7")
        restore_host(server, DOCKER_HOST, ipsets)
        sample = probes(tcp=[22, 23, 80, 443, 3306, 8080], udp=[53, 5000])
        result, table, dump = check_equivalence(
            client, server, sample, ipset_text=ipsets, ruleset="docker-host"
        )
        assert_equivalent(table)
        assert_every_line_accounted(result, dump)
        assert {c.owner for c in result.foreign_chains} == {"Docker"}
        # the same host once the client is blocked and no longer an admin
        server.run("ipset", "flush", "admins")
        server.run("ipset", "add", "blocklist", client.addr4)
        ipsets = DOCKER_IPSETS.format(admin="198.19.1.1", blocked=client.addr4)
        sample = probes(tcp=[22, 23, 80, 443, 3306, 8080], udp=[53, 5000], sport_base=43000)
        _, table, _ = check_equivalence(
            client, server, sample, ipset_text=ipsets, ruleset="docker-host"
        )
    assert all(k == t for k, t in table.values()), table
    assert not any(k for k, _ in table.values())
