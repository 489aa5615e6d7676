"""Dashboard pages and forms: what the user types reaches the services, and the services'
errors come back next to the right field."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from rules import services
from rules.models import AddressGroup, AddressObject, Device, Rule, RuleSet, Service, ServiceGroup

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def small_policy() -> RuleSet:
    """office/web-1 addresses, https/web services and a 3-rule set `web`."""
    services.object_save(AddressObject(name="office", value="198.18.0.0/24"))
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    services.object_save(Service(name="https", protocol="tcp", ports=["443"]))
    web = services.object_save(ServiceGroup(name="web"))
    services.service_group_set_members(group=web, members=["https"])
    ruleset = services.object_save(RuleSet(name="web"))
    services.rule_create(
        ruleset=ruleset,
        data={
            "action": "accept",
            "sources": ["office"],
            "services": ["web"],
            "comment": "office to web",
        },
    )
    services.rule_create(
        ruleset=ruleset,
        data={
            "action": "accept",
            "destinations": ["web-1"],
            "protocol": "tcp",
            "dports": ["22"],
            "comment": "ssh",
        },
    )
    services.rule_create(
        ruleset=ruleset,
        data={"action": "drop", "sources": ["198.18.9.0/24"], "comment": "block lab"},
    )
    return ruleset


@pytest.fixture
def operator_client(client, users):
    client.force_login(users["operator"])
    return client


def positions(ruleset) -> list[str]:
    return list(ruleset.rules.order_by("position").values_list("comment", flat=True))


def test_login_and_logout(client, users):
    response = client.post(reverse("login"), {"username": "viewer", "password": "pw-Rampart-123"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    client.post(reverse("logout"))
    assert client.get("/").status_code == 302
    bad = client.post(reverse("login"), {"username": "viewer", "password": "wrong"})
    assert "Wrong username or password" in bad.content.decode()


def test_main_pages_render(operator_client):
    ruleset = small_policy()
    Device.objects.create(
        name="edge-1",
        address="198.18.0.2",
        status="offline",
        drifted=True,
        drift_diff="-A INPUT -j ACCEPT\n+A INPUT -j DROP",
        facts={"kernel": "6.1"},
    )
    device = Device.objects.get(name="edge-1")
    pages = {
        reverse("dashboard:overview"): ["edge-1", "devices-offline"],
        reverse("dashboard:devices"): ["edge-1", "drifted"],
        reverse("dashboard:device", args=[device.pk]): ["kernel", "diff-add"],
        reverse("dashboard:rulesets"): ["web"],
        reverse("dashboard:ruleset", args=[ruleset.pk]): ["office to web", "block lab"],
        reverse("dashboard:objects", args=["addresses"]): ["198.18.0.0/24"],
        reverse("dashboard:objects", args=["service-groups"]): ["https"],
    }
    for url, needles in pages.items():
        page = operator_client.get(url).content.decode()
        for needle in needles:
            assert needle in page, (url, needle)


def test_rule_create_shows_service_errors_on_the_field(operator_client):
    ruleset = small_policy()
    url = reverse("dashboard:rule-new", args=[ruleset.pk])
    response = operator_client.post(
        url,
        {
            "chain": "input",
            "action": "accept",
            "sources": "nosuch",
            "protocol": "tcp",
            "dports": "99999",
        },
        **HX,
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "unknown address or address group" in page and "nosuch" in page
    assert 'id="err-dports"' in page and "99999" in page
    assert ruleset.rules.count() == 3


def test_rule_create_edit_and_delete(operator_client):
    ruleset = small_policy()
    response = operator_client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {
            "chain": "input",
            "action": "reject",
            "sources": "office, 198.18.5.5",
            "services": "https",
            "comment": "new one",
            "position": "1",
            "enabled": "on",
            "states": ["new"],
        },
        **HX,
    )
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"])["rules-changed"] is True
    rule = ruleset.rules.get(comment="new one")
    assert rule.position == 1 and rule.action == "reject" and rule.states == ["new"]
    assert sorted(a.ref for a in rule.addresses.all()) == ["198.18.5.5", "office"]
    edit = reverse("dashboard:rule-edit", args=[ruleset.pk, rule.pk])
    assert "198.18.5.5" in operator_client.get(edit, **HX).content.decode()
    operator_client.post(
        edit, {"chain": "input", "action": "drop", "sources": "office", "comment": "edited"}, **HX
    )
    rule.refresh_from_db()
    assert (rule.action, rule.comment, rule.enabled) == ("drop", "edited", False)
    operator_client.post(reverse("dashboard:rule-delete", args=[ruleset.pk, rule.pk]), **HX)
    assert positions(ruleset) == ["office to web", "ssh", "block lab"]


def test_inline_validation_saves_nothing(operator_client):
    ruleset = small_policy()
    url = reverse("dashboard:rule-validate-new", args=[ruleset.pk])
    bad = operator_client.post(
        url,
        {
            "chain": "output",
            "action": "accept",
            "in_interface": "eth0",
            "sources": "198.18.0.1",
            "destinations": "2001:2::1",
        },
        **HX,
    ).content.decode()
    assert 'id="err-in_interface"' in bad and "the output chain has no input interface" in bad
    assert "no packet can match" in bad
    good = operator_client.post(
        url, {"chain": "input", "action": "accept", "sources": "office"}, **HX
    ).content.decode()
    assert "<div>" not in good.split('id="err-sources"')[1].split("</div>")[0]
    assert ruleset.rules.count() == 3


def test_drag_place_before_and_after(operator_client):
    ruleset = small_policy()
    rules = {r.comment: r for r in ruleset.rules.all()}
    url = reverse("dashboard:rule-place", args=[ruleset.pk])
    response = operator_client.post(
        url, {"rule": rules["block lab"].pk, "before": rules["office to web"].pk}, **HX
    )
    assert response.status_code == 204
    assert positions(ruleset) == ["block lab", "office to web", "ssh"]
    operator_client.post(url, {"rule": rules["block lab"].pk, "after": rules["ssh"].pk}, **HX)
    assert positions(ruleset) == ["office to web", "ssh", "block lab"]
    refused = operator_client.post(url, {"rule": rules["ssh"].pk, "before": rules["ssh"].pk}, **HX)
    assert refused.status_code == 409 and "toast" in refused["HX-Trigger"]


def test_bulk_enable_disable_move_delete(operator_client):
    ruleset = small_policy()
    ids = {r.comment: r.pk for r in ruleset.rules.all()}
    url = reverse("dashboard:rules-bulk", args=[ruleset.pk])
    operator_client.post(url, {"action": "disable", "rules": [ids["ssh"], ids["block lab"]]}, **HX)
    assert list(ruleset.rules.filter(enabled=False).values_list("comment", flat=True)) == [
        "ssh",
        "block lab",
    ]
    operator_client.post(url, {"action": "enable", "rules": [ids["ssh"]]}, **HX)
    assert Rule.objects.get(pk=ids["ssh"]).enabled
    operator_client.post(
        url, {"action": "move", "position": "1", "rules": [ids["ssh"], ids["block lab"]]}, **HX
    )
    assert positions(ruleset) == ["ssh", "block lab", "office to web"]
    no_pos = operator_client.post(url, {"action": "move", "rules": [ids["ssh"]]}, **HX)
    assert no_pos.status_code == 400 and "target position" in no_pos["HX-Trigger"]
    operator_client.post(
        url, {"action": "delete", "rules": [ids["ssh"], ids["office to web"]]}, **HX
    )
    assert positions(ruleset) == ["block lab"]
    assert ruleset.rules.get().position == 1


def test_filter_and_search(operator_client):
    ruleset = small_policy()
    url = reverse("dashboard:ruleset", args=[ruleset.pk])
    for query, expected in (
        ({"q": "office"}, {"office to web"}),
        ({"q": "https"}, {"office to web"}),
        ({"q": "web"}, {"office to web", "ssh"}),
        ({"action": "drop"}, {"block lab"}),
        ({"q": "#2"}, {"ssh"}),
        ({"q": "198.18.1.10"}, {"ssh"}),
    ):
        response = operator_client.get(url, query, HTTP_HX_TARGET="rules-table", **HX)
        page = response.content.decode()
        assert "<nav" not in page.split('id="rules-table"')[0]  # only the table partial
        shown = {c for c in ("office to web", "ssh", "block lab") if f">{c}<" in page}
        assert shown == expected, query


def test_address_group_form_and_where_used(operator_client):
    small_policy()
    new = reverse("dashboard:object-new", args=["address-groups"])
    bad = operator_client.post(new, {"name": "dmz", "members": "web-1 nosuch"})
    assert "unknown address or address group" in bad.content.decode()
    assert not AddressGroup.objects.filter(name="dmz").exists()
    operator_client.post(new, {"name": "dmz", "members": "web-1, 198.18.3.0/24"})
    group = AddressGroup.objects.get(name="dmz")
    assert [m.ref for m in group.members.all()] == ["web-1", "198.18.3.0/24"]
    web1 = AddressObject.objects.get(name="web-1")
    used = operator_client.get(
        reverse("dashboard:object-used", args=["addresses", web1.pk]), **HX
    ).content.decode()
    assert "address group dmz" in used and "rule web#2" in used
    refused = operator_client.post(
        reverse("dashboard:object-delete", args=["addresses", web1.pk]), follow=True
    )
    assert "still in use" in refused.content.decode()
    assert AddressObject.objects.filter(name="web-1").exists()


def test_address_form_errors(operator_client):
    response = operator_client.post(
        reverse("dashboard:object-new", args=["addresses"]),
        {"name": "bad", "value": "198.18.0.300"},
    )
    page = response.content.decode()
    assert response.status_code == 200 and 'id="err-value"' in page
    assert "198.18.0.300" in page.split('id="err-value"')[1].split("</div></div>")[0]
    assert not AddressObject.objects.filter(name="bad").exists()


def row_html(page: str, rule) -> str:
    """The <tr> of one rule in a rendered rule table."""
    return "<tr" + page.split(f'<tr id="rule-{rule.pk}"')[1].split("</tr>")[0]


def test_shadowed_rule_is_highlighted(operator_client):
    ruleset = small_policy()
    url = reverse("dashboard:rule-new", args=[ruleset.pk])
    operator_client.post(
        url,
        {
            "chain": "input",
            "action": "accept",
            "sources": "198.18.9.5",
            "comment": "never decides",
            "enabled": "on",
        },
        **HX,
    )
    page = operator_client.get(reverse("dashboard:ruleset", args=[ruleset.pk])).content.decode()
    shadowed = row_html(page, ruleset.rules.get(comment="never decides"))
    assert "finding-shadowed" in shadowed.split(">")[0]
    assert "is shadowed" in shadowed and "rule #3" in shadowed
    assert "covers rule #4" in row_html(page, ruleset.rules.get(comment="block lab"))
    assert "finding-" not in row_html(page, ruleset.rules.get(comment="office to web"))
    assert "1 finding" in page


def test_device_deploy_button_starts_a_deployment(client, users):
    from agents.models import Deployment
    from rules.models import DeviceGroup, DeviceGroupRuleSet, DeviceMembership

    ruleset = small_policy()
    group = DeviceGroup.objects.create(name="web")
    DeviceGroupRuleSet.objects.create(group=group, ruleset=ruleset)
    device = Device.objects.create(name="edge-1", address="198.18.0.2")
    DeviceMembership.objects.create(device=device, group=group)
    client.force_login(users["viewer"])
    detail = client.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    assert "deploy-button" not in detail
    assert client.post(reverse("dashboard:deploy"), {"device": device.pk}).status_code == 403
    client.force_login(users["operator"])
    assert (
        "deploy-button"
        in client.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    )
    response = client.post(reverse("dashboard:deploy"), {"device": device.pk, "inline": "1"}, **HX)
    deployment = Deployment.objects.get()
    page = response.content.decode()
    assert (
        f"Deployment #{deployment.pk}" in page
        and 'hx-trigger="every 1s"' in page
        and "edge-1" in page
    )
    assert deployment.device_deployments.get().device == device
    listing = client.get(reverse("dashboard:deployments")).content.decode()
    assert f"#{deployment.pk}" in listing
    DeviceMembership.objects.create(
        device=Device.objects.create(name="edge-2", address="198.18.0.3"), group=group
    )
    by_ruleset = client.post(
        reverse("dashboard:deploy"), {"ruleset": ruleset.pk, "canary": "1", "halt_on_failure": "on"}
    )
    fleet = Deployment.objects.latest("id")
    assert by_ruleset.status_code == 302 and by_ruleset["Location"] == reverse(
        "dashboard:deployment", args=[fleet.pk]
    )
    page = client.get(by_ruleset["Location"]).content.decode()
    assert "Wave 1</strong>" not in page and "Wave 1 (canary)" in page and "Wave 2" in page
    assert page.index("edge-1") < page.index("Wave 2") < page.index("edge-2")


def test_audit_page_filters_and_exports(operator_client):
    ruleset = small_policy()
    operator_client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {"chain": "input", "action": "drop", "comment": "audited", "enabled": "on"},
        **HX,
    )
    url = reverse("dashboard:audit")
    page = operator_client.get(url, {"actor": "operator"}).content.decode()
    assert "operator" in page and "rules.rule" in page
    assert "No entries match" in operator_client.get(url, {"actor": "nobody"}).content.decode()
    bad = operator_client.get(url, {"since": "yesterday"}).content.decode()
    assert "alert-danger" in bad
    export = operator_client.get(
        reverse("dashboard:audit-export"), {"format": "csv", "actor": "operator"}
    )
    text = b"".join(export.streaming_content).decode()
    assert text.startswith("seq,time,actor") and ",operator," in text
    assert "system" not in {line.split(",")[2] for line in text.splitlines()[1:]}


def test_revision_diff_rollback_and_approval(client, users):
    from rules.models import RevisionStatus

    ruleset = small_policy()
    client.force_login(users["operator"])
    first = ruleset.revisions.order_by("number").last()
    client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {"chain": "input", "action": "drop", "comment": "late addition", "enabled": "on"},
        **HX,
    )
    latest = ruleset.revisions.order_by("number").last()
    page = client.get(reverse("dashboard:revision", args=[latest.pk])).content.decode()
    assert "+ added" in page and "late addition" in page
    client.post(reverse("dashboard:revision-rollback", args=[first.pk]), {"message": "undo"})
    assert "late addition" not in positions(ruleset)
    assert ruleset.revisions.order_by("number").last().message == "undo"

    # Four eyes: the operator's edit waits; the operator cannot review, an approver can.
    ruleset.requires_approval = True
    ruleset.save()
    client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {"chain": "input", "action": "drop", "comment": "needs review", "enabled": "on"},
        **HX,
    )
    pending = ruleset.revisions.get(status=RevisionStatus.PENDING)
    assert f"r{pending.number}" in client.get(reverse("dashboard:approvals")).content.decode()
    assert (
        client.post(
            reverse("dashboard:revision-review", args=[pending.pk]), {"decision": "approve"}
        ).status_code
        == 403
    )
    client.force_login(users["approver"])
    refused = client.post(
        reverse("dashboard:revision-review", args=[pending.pk]), {"decision": "reject"}, follow=True
    )
    assert "say why" in refused.content.decode()
    client.post(
        reverse("dashboard:revision-review", args=[pending.pk]),
        {"decision": "approve", "comment": "ok"},
    )
    pending.refresh_from_db()
    assert pending.status == RevisionStatus.APPROVED and pending.reviewer_name == "approver"


def _device_with(ruleset, name: str = "edge-1"):
    from rules.models import DeviceRuleSet

    device = Device.objects.create(
        name=name, address="198.18.0.2", management_sources=["198.18.0.1"]
    )
    DeviceRuleSet.objects.create(device=device, ruleset=ruleset)
    return device


def test_tracer_names_the_deciding_rule(operator_client):
    ruleset = small_policy()
    device = _device_with(ruleset)
    url = reverse("dashboard:tracer")
    page = operator_client.get(
        url,
        {
            "device": device.pk,
            "chain": "input",
            "protocol": "tcp",
            "state": "new",
            "source": "198.18.9.9",
            "destination": "198.18.0.2",
            "dport": "443",
        },
    ).content.decode()
    assert 'data-testid="trace-result"' in page and "action-drop" in page and "rule #3" in page
    page = operator_client.get(
        url,
        {
            "device": device.pk,
            "chain": "input",
            "protocol": "tcp",
            "state": "new",
            "source": "198.18.0.9",
            "destination": "198.18.0.2",
            "dport": "443",
        },
    ).content.decode()
    assert "action-accept" in page and "rule #1" in page
    bad = operator_client.get(
        url,
        {
            "device": device.pk,
            "chain": "input",
            "protocol": "icmp",
            "state": "new",
            "source": "198.18.0.9",
            "destination": "2001:2::1",
            "dport": "80",
        },
    ).content.decode()
    assert "different families" in bad and 'data-testid="trace-result"' not in bad


def test_preview_shows_compiled_bundle_and_diff(operator_client, users):
    from django.utils import timezone

    from agents.services import deploy_create
    from dashboard.selectors import device_preview

    ruleset = small_policy()
    device = _device_with(ruleset)
    url = reverse("dashboard:ruleset-preview", args=[ruleset.pk])
    page = operator_client.get(url).content.decode()
    assert "nothing deployed yet" in page and "diff-add" in page and "iptables_v4" in page
    assert "*filter" in page and f"Deploy to {device.name}" in page
    # Pretend the worker pushed that bundle (the deploy engineer's tests cover the real push).
    deployment = deploy_create(user=users["operator"], devices=[device.pk])
    pushed = device_preview(device).hash
    deployment.device_deployments.update(
        state="confirmed", bundle_hash=pushed, started_at=timezone.now(), finished_at=timezone.now()
    )
    assert "identical to what is deployed" in operator_client.get(url).content.decode()
    operator_client.post(
        reverse("dashboard:rule-new", args=[ruleset.pk]),
        {
            "chain": "input",
            "action": "reject",
            "sources": "198.18.77.0/24",
            "comment": "new since deploy",
            "enabled": "on",
        },
        **HX,
    )
    page = operator_client.get(url).content.decode()
    assert f"deployment #{deployment.pk}" in page and ">exact<" in page
    added = [
        line
        for line in page.split('class="diff-add"')[1:]
        if "198.18.77.0/24" in line.split("</span>")[0]
    ]
    assert added and "REJECT" in added[0].split("</span>")[0]
    assert (
        'class="diff-del"' not in page
        or "198.18.77.0/24" not in page.split('class="diff-del"')[1].split("</span>")[0]
    )


def test_deploy_refusal_is_shown_where_it_was_asked(operator_client):
    from agents.models import Deployment

    ruleset = services.object_save(RuleSet(name="guarded", requires_approval=True))
    services.rule_create(ruleset=ruleset, data={"action": "accept", "comment": "unreviewed"})
    device = _device_with(ruleset)
    preview = reverse("dashboard:ruleset-preview", args=[ruleset.pk])
    response = operator_client.post(
        reverse("dashboard:deploy"), {"device": device.pk, "next": preview}, follow=True
    )
    assert response.redirect_chain[-1][0] == preview
    assert "Deploy refused" in response.content.decode() and "approv" in response.content.decode()
    assert not Deployment.objects.exists()
    evil = operator_client.post(
        reverse("dashboard:deploy"), {"device": device.pk, "next": "https://evil.example/"}
    )
    assert evil["Location"] == reverse("dashboard:deployments")
