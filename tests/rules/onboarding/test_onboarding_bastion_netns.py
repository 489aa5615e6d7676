"""A hand-written bastion whose `SSH_IN` chain starts with a conditional RETURN: onboarded,
its verdicts equal the kernel's, and once the migrated bundle replaces the original rules
in the kernel the admins still reach ssh (and the others still do not)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from compiler import PolicyDocument, compile_device
from rules.exporter import export_document
from tests.compiler.kernel import load, reset
from tests.support.netns import host_pair, needs_netns

from .dumps import BASTION
from .equivalence import check_equivalence, kernel_verdicts, probes, root_firewall

pytestmark = [*needs_netns, pytest.mark.django_db, pytest.mark.slow]

SAMPLE = {"tcp": [22, 25, 80, 8745], "udp": [53, 5000]}


@pytest.fixture
def root_untouched():
    before = root_firewall()
    yield
    assert root_firewall() == before, "the root namespace's firewall changed"


def migrate(client, server, admins: str, sport_base: int) -> tuple[dict, dict]:
    """Onboard the bastion (admins = `admins`), compare verdicts, then replace the original
    rules with the migrated bundle and probe again: (tracer table, migrated kernel table)."""
    reset(server)
    server.run("iptables-restore", input=BASTION.format(admins=admins))
    sample = probes(**SAMPLE, sport_base=sport_base)
    result, table, _ = check_equivalence(client, server, sample, ruleset="bastion")
    assert not result.skipped, result.skipped  # nothing lost: the RETURN is converted
    assert result.document["rulesets"][0]["rules"][1] == {
        "chain": "input",
        "action": "drop",
        "sources": [admins],
        "sources_negate": True,
        "protocol": "tcp",
        "dports": ["22"],
        "log": True,
        "log_prefix": "ssh-denied: ",  # as the host logged it, space kept
        "comment": "iptables-save line 15",  # the live dump has header lines
    }
    doc = PolicyDocument.from_dict(export_document())
    bundle = compile_device(doc, "onboarded-host", now=timezone.now())
    reset(server)
    load(server, bundle)
    migrated = kernel_verdicts(client, server, probes(**SAMPLE, sport_base=sport_base + 100))
    after = {f"{p.proto}/{p.port}": ok for p, ok in zip(sample, migrated, strict=True)}
    return table, after


def test_bastion_keeps_ssh_for_its_admins(root_untouched):
    with host_pair("pcbs") as (client, server):
        admins = client.addr4.rsplit(".", 1)[0] + ".0/24"
        table, after = migrate(client, server, admins, 44000)
        assert all(k == t for k, t in table.values()), table
        assert after == {k: v[0] for k, v in table.items()}
        assert after["tcp/22"] and after["tcp/8745"] and not after["tcp/80"]
        # the client outside the admins' network: ssh refused before and after
        table, after = migrate(client, server, "198.19.7.0/24", 45000)
        assert all(k == t for k, t in table.values()), table
        assert after == {k: v[0] for k, v in table.items()}
        assert not after["tcp/22"] and not after["tcp/8745"] and after["udp/53"]
