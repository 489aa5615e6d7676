"""Zone pages on the dashboard: list (interfaces, networks, rules naming it), create and edit
with field errors, where used, delete refused while used; and the rule set analysis's list
of objects nothing uses (zones among them)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rules import services
from rules.models import Device, Zone
from rules.services import device_refs

from .helpers import HX, small_policy

pytestmark = pytest.mark.django_db


def test_zone_pages_list_create_edit_and_delete(operator_client):
    ruleset = small_policy()
    new = reverse("dashboard:object-new", args=["zones"])
    bad = operator_client.post(
        new, {"name": "lan", "interfaces": "eth1, eth/1", "networks": "198.18.1.0/3x"}
    )
    page = bad.content.decode()
    assert bad.status_code == 200 and not Zone.objects.exists()
    assert "eth/1" in page.split('id="err-interfaces"')[1].split("</div></div>")[0]
    assert "prefix length" in page.split('id="err-networks"')[1].split("</div></div>")[0]
    operator_client.post(new, {"name": "lan", "interfaces": "eth1 veth+", "networks": ""})
    zone = Zone.objects.get(name="lan")
    assert (zone.interfaces, zone.networks) == (["eth1", "veth+"], [])
    edit = reverse("dashboard:object-edit", args=["zones", zone.pk])
    assert "eth1, veth+" in operator_client.get(edit).content.decode()
    operator_client.post(
        edit, {"name": "lan", "interfaces": "eth1, veth+", "networks": "198.18.1.0/24"}
    )
    zone.refresh_from_db()
    assert zone.networks == ["198.18.1.0/24"]
    services.rule_create(
        ruleset=ruleset, data={"chain": "forward", "action": "accept", "in_zone": "lan"}
    )
    listing = operator_client.get(reverse("dashboard:objects", args=["zones"])).content.decode()
    row = listing.split(f'id="obj-{zone.pk}"')[1].split("</tr>")[0]
    assert "eth1, veth+" in row and "198.18.1.0/24" in row
    assert '<td class="text-end">1</td>' in row
    used = operator_client.get(
        reverse("dashboard:object-used", args=["zones", zone.pk]), **HX
    ).content.decode()
    assert "rule web#4" in used and "rule set web" in used
    delete = reverse("dashboard:object-delete", args=["zones", zone.pk])
    refused = operator_client.post(delete, follow=True)
    assert "still in use" in refused.content.decode()
    assert Zone.objects.filter(name="lan").exists()
    spare = services.zone_save(Zone(name="spare", interfaces=["eth9"]))
    operator_client.post(reverse("dashboard:object-delete", args=["zones", spare.pk]))
    assert not Zone.objects.filter(name="spare").exists()


def test_ruleset_analysis_lists_objects_nothing_uses(operator_client):
    ruleset = small_policy()
    services.zone_save(Zone(name="spare", interfaces=["eth9"]))
    page = operator_client.get(reverse("dashboard:ruleset", args=[ruleset.pk])).content.decode()
    assert 'data-testid="unused-objects"' in page
    unused = operator_client.get(
        reverse("dashboard:ruleset-unused", args=[ruleset.pk]), **HX
    ).content.decode()
    assert "spare" in unused and "no rule or NAT rule names it" in unused
    assert "this rule set" in unused  # no device applies web
    assert ">office<" not in unused  # rule #1 uses it


def test_tracer_page_traces_by_zone(operator_client):
    ruleset = small_policy()
    services.zone_save(Zone(name="lan", interfaces=["eth1", "veth+"], networks=["198.18.0.0/24"]))
    services.rule_create(
        ruleset=ruleset,
        data={"action": "accept", "protocol": "tcp", "dports": ["22"], "in_zone": "lan"},
        position=1,
    )
    device = services.object_save(Device(name="fw", address="198.18.0.2"))
    device_refs.device_set_rulesets(device=device, rulesets=["web"])
    query = {
        "device": device.pk,
        "target": "candidate",
        "chain": "input",
        "protocol": "tcp",
        "source": "198.18.0.5",
        "destination": "198.18.0.2",
        "dport": "22",
        "state": "new",
        "in_zone": "lan",
    }
    page = operator_client.get(reverse("dashboard:tracer"), query).content.decode()
    result = page.split('data-testid="trace-zone-result"')[1].split("</section>")[0]
    assert "<td>eth1</td>" in result and "<td>veth0</td>" in result
    assert "web rule #1" in result and "mixed" not in result
    both = operator_client.get(
        reverse("dashboard:tracer"), {**query, "in_interface": "eth1"}
    ).content.decode()
    assert "give either in_interface or in_zone" in both
