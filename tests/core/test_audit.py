"""The audit log: what is recorded, attribution, atomicity, tamper evidence, review API."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction

from core.audit.context import audit_context
from core.audit.models import AuditChainHead, AuditEntry
from core.audit.services import record, verify
from rules import services
from rules.models import AddressObject, Rule, RuleSet
from tests.core.audit_support import entries, some_entries

pytestmark = pytest.mark.django_db


# --- what is recorded -----------------------------------------------------------------------


def test_create_update_delete_record_before_and_after():
    obj = services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    obj.value = "198.18.1.11"
    services.object_save(obj)
    pk = obj.pk
    services.object_delete(obj)
    create, update, delete = entries(object_type="rules.addressobject")
    assert (create.action, create.before, create.after["value"]) == ("create", None, "198.18.1.10")
    assert update.action == "update" and update.changed == ["value"]
    assert (update.before["value"], update.after["value"]) == ("198.18.1.10", "198.18.1.11")
    assert delete.action == "delete" and delete.before["name"] == "web-1" and delete.after is None
    assert {e.object_id for e in (create, update, delete)} == {str(pk)}
    assert all(e.channel == "system" for e in (create, update, delete))


def test_a_save_that_changes_nothing_records_nothing():
    obj = services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    before = AuditEntry.objects.count()
    services.object_save(obj)  # only last_updated moves
    assert AuditEntry.objects.count() == before


def test_secrets_are_redacted(make_user):
    from knox.models import AuthToken

    user = make_user("alice", "operator")
    _, key = AuthToken.objects.create(user=user)
    token = AuthToken.objects.get(user=user)
    user_entry = entries(object_type="auth.user", action="create")[0]
    assert user_entry.after["password"] == "[redacted]"
    created = entries(action="token_create")[0]
    text = json.dumps([created.after, created.object_name, created.object_id])
    assert key not in text and token.digest not in text and token.token_key not in text
    assert created.after["digest"] == "[redacted]" and created.object_id == token.token_key[:8]
    user.set_password("another-Secret-99")
    user.save()
    change = entries(object_type="auth.user", action="update")[-1]
    assert change.changed == ["password"] and "another" not in json.dumps(change.after)
    token.delete()
    assert entries(action="token_revoke")[0].object_id == token.token_key[:8]


def test_logins_logouts_and_failures(client, make_user):
    make_user("alice", "viewer")
    assert client.login(username="alice", password="pw-Rampart-123")
    client.logout()
    assert authenticate(username="alice", password="wrong") is None
    actions = [e.action for e in entries(action__in=["login", "logout", "login_failed"])]
    assert actions == ["login", "logout", "login_failed"]
    failed = entries(action="login_failed")[0]
    assert failed.object_name == "alice" and "wrong" not in json.dumps(failed.extra)


def test_role_changes_are_recorded(make_user):
    from django.contrib.auth.models import Group

    user = make_user("bob")
    user.groups.add(Group.objects.get(name="approver"))
    change = entries(object_type="auth.user", action="update")[-1]
    assert change.before == {"groups": []} and change.after == {"groups": ["approver"]}


def test_bulk_rule_writes_are_recorded_per_rule():
    rs = services.object_save(RuleSet(name="rs"))
    services.object_save(AddressObject(name="office", value="198.18.0.0/24"))
    result = services.rules_bulk(
        ruleset=rs,
        create=[
            {"action": "accept", "sources": ["office"], "protocol": "tcp", "dports": ["22"]},
            {"action": "drop", "comment": "rest"},
        ],
    )
    created = entries(object_type="rules.rule", action="create")
    assert sorted(e.object_id for e in created) == sorted(str(r.pk) for r in result.created)
    by_id = {e.object_id: e for e in created}
    first_entry = by_id[str(result.created[0].pk)]
    assert (first_entry.after["sources"], first_entry.after["dports"]) == (["office"], ["22"])
    assert by_id[str(result.created[1].pk)].after["comment"] == "rest"
    first, second = result.created
    services.rules_reorder(ruleset=rs, order=[second.pk, first.pk])
    moves = [
        e for e in entries(object_type="rules.rule", action="update") if e.changed == ["position"]
    ]
    assert {(e.object_id, e.before["position"], e.after["position"]) for e in moves} == {
        (str(first.pk), 1, 2),
        (str(second.pk), 2, 1),
    }
    services.rules_bulk(ruleset=rs, delete=[first.pk])
    [gone] = entries(object_type="rules.rule", action="delete")
    assert (gone.object_id, gone.before["comment"], gone.after) == (str(first.pk), "", None)
    assert verify()["ok"]


def test_large_bulk_writes_rows_in_one_go_and_the_chain_verifies():
    """Past RAW_INSERT_FROM entries the rows go in one go (COPY on PostgreSQL): rules, their
    references and their audit entries read back exactly, and the chain verifies."""
    from core.audit.services import RAW_INSERT_FROM

    rs = services.object_save(RuleSet(name="big"))
    services.object_save(AddressObject(name="office", value="198.18.0.0/24"))
    n = RAW_INSERT_FROM + 70
    result = services.rules_bulk(
        ruleset=rs,
        create=[
            {
                "action": "accept",
                "sources": ["office", f"198.18.1.{i % 250}"],
                "protocol": "tcp",
                "dports": [str(1000 + i)],
                "comment": f'rule {i} ü "quoted"\ttab',
                "states": ["new"],
            }
            for i in range(n)
        ],
    )
    assert len(result.created) == n
    created = {e.object_id: e for e in entries(object_type="rules.rule", action="create")}
    assert len(created) == n
    entry = created[str(result.created[7].pk)]
    assert entry.after["comment"] == 'rule 7 ü "quoted"\ttab'
    assert entry.after["sources"] == ["office", "198.18.1.7"] and entry.after["states"] == ["new"]
    rule = rs.rules.get(pk=result.created[7].pk)
    assert (rule.comment, rule.dports, rule.position) == ('rule 7 ü "quoted"\ttab', ["1007"], 8)
    assert list(rule.addresses.order_by("index").values_list("literal", flat=True)) == [
        "",
        "198.18.1.7",
    ]
    assert verify()["ok"]


def test_explicit_events_and_system_context():
    with audit_context(actor="system:deploy", channel="system"):
        entry = record(
            "deploy_state",
            object_type="agents.deployment",
            object_id=7,
            name="web-1",
            before={"state": "queued"},
            after={"state": "applied"},
        )
    assert (entry.actor, entry.channel, entry.changed) == ("system:deploy", "system", ["state"])
    assert entry.request_id


def test_management_commands_record_on_the_cli_channel(make_user, capsys):
    make_user("ci", "operator")
    call_command("create_api_token", "ci")
    entry = entries(action="token_create")[0]
    assert entry.channel == "cli" and entry.actor.startswith("cli:")
    assert entry.extra["command"] == "create_api_token"


# --- atomicity --------------------------------------------------------------------------------


def test_a_change_that_fails_validation_leaves_no_entry():
    before = AuditEntry.objects.count()
    with pytest.raises(ValidationError):
        services.object_save(AddressObject(name="bad", value="198.18.0.0/33"))
    rs = services.object_save(RuleSet(name="rs"))
    after_rs = AuditEntry.objects.count()
    with pytest.raises(ValidationError):
        services.rule_create(ruleset=rs, data={"protocol": "tcp", "dports": ["70000"]})
    assert AuditEntry.objects.count() == after_rs > before
    assert not Rule.objects.exists()


def test_a_rolled_back_change_leaves_no_entry_and_a_committed_one_has_one():
    before = AuditEntry.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
        assert AuditEntry.objects.count() == before + 1
        raise RuntimeError("boom")
    assert AuditEntry.objects.count() == before
    assert AuditChainHead.objects.get(pk=1).seq == before
    services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    assert AuditEntry.objects.filter(object_type="rules.addressobject").count() == 1
    assert verify()["ok"]


def test_no_admin_path_can_change_entries(rf, make_user):
    from django.contrib import admin

    model_admin = admin.site._registry[AuditEntry]
    request = rf.get("/admin/")
    request.user = make_user("root")
    request.user.is_superuser = True
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


# --- the API: attribution, review, export --------------------------------------------------------


def test_api_requests_are_attributed_to_the_token_and_return_a_request_id(api_client_for, users):
    from knox.models import AuthToken

    client = api_client_for(users["approver"])
    response = client.get(
        "/api/v1/audit/", HTTP_USER_AGENT="ci-bot/1.0", HTTP_X_REQUEST_ID="req-12345678"
    )
    assert response.status_code == 200 and response["X-Request-ID"] == "req-12345678"
    rs = services.object_save(RuleSet(name="rs", requires_approval=True))
    rev = rs.revisions.get()
    response = client.post(
        f"/api/v1/revisions/{rev.pk}/approve/",
        {"comment": "ok"},
        format="json",
        HTTP_USER_AGENT="ci-bot/1.0",
        HTTP_X_RAMPART_REASON="CHG-7 window",
        HTTP_X_RAMPART_TICKET="CHG-7",
    )
    assert response.status_code == 200, response.content
    entry = entries(action="revision_approve")[0]
    token = AuthToken.objects.get(user=users["approver"])
    assert (entry.actor, entry.user_id, entry.token) == (
        "approver",
        users["approver"].pk,
        f"knox:{token.token_key[:8]}",
    )
    assert (entry.channel, entry.user_agent, entry.client_ip) == ("api", "ci-bot/1.0", "127.0.0.1")
    assert entry.ticket == "CHG-7" and entry.request_id == response["X-Request-ID"]


def test_reason_is_required_when_the_setting_says_so(settings, api_client_for, users):
    settings.RAMPART = {**settings.RAMPART, "AUDIT_REQUIRE_REASON": True}
    rs = services.object_save(RuleSet(name="rs", requires_approval=True))
    rev = rs.revisions.get()
    client = api_client_for(users["approver"])
    before = AuditEntry.objects.count()
    response = client.post(f"/api/v1/revisions/{rev.pk}/approve/", {}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["non_field_errors"][0]
    assert AuditEntry.objects.count() == before
    response = client.post(
        f"/api/v1/revisions/{rev.pk}/approve/", {"reason": "nightly window"}, format="json"
    )
    assert response.status_code == 200
    assert entries(action="revision_approve")[0].reason == "nightly window"
    assert client.get("/api/v1/audit/").status_code == 200  # reads need no reason


def test_a_ticket_is_required_when_the_setting_says_so(settings, api_client_for, users):
    settings.RAMPART = {**settings.RAMPART, "AUDIT_REQUIRE_TICKET": True}
    client = api_client_for(users["operator"])
    data = {"name": "web-7", "value": "198.18.1.7"}
    response = client.post("/api/v1/addresses/", data, format="json")
    assert response.status_code == 400 and "ticket" in response.json()["non_field_errors"][0]
    assert not AddressObject.objects.filter(name="web-7").exists()
    response = client.post("/api/v1/addresses/", data, format="json", HTTP_X_RAMPART_TICKET="CHG-7")
    assert response.status_code == 201
    assert entries(object_type="rules.addressobject", action="create")[0].ticket == "CHG-7"


def test_list_filters_search_and_per_object_history(api_client_for, users):
    web = services.object_save(AddressObject(name="web-1", value="198.18.1.10"))
    services.object_save(AddressObject(name="db-1", value="198.18.1.20"))
    web.value = "198.18.1.11"
    services.object_save(web)
    client = api_client_for(users["viewer"])
    body = client.get(
        "/api/v1/audit/", {"object_type": "rules.addressobject", "object_id": web.pk}
    ).json()
    assert [e["action"] for e in body["results"]] == ["update", "create"]
    assert client.get("/api/v1/audit/", {"q": "db-1"}).json()["count"] == 1
    assert (
        client.get(
            "/api/v1/audit/",
            {"action": "update", "channel": "system", "object_type": "rules.addressobject"},
        ).json()["count"]
        == 1
    )
    assert client.get("/api/v1/audit/", {"since": "2999-01-01T00:00:00Z"}).json()["count"] == 0
    assert client.get("/api/v1/audit/", {"actor": "nobody"}).json()["count"] == 0
    assert client.post("/api/v1/audit/", {}).status_code in (403, 405)
    one = AuditEntry.objects.first().pk
    admin = api_client_for(users["admin"])
    for method in (admin.put, admin.patch, admin.delete):
        assert method(f"/api/v1/audit/{one}/", {"actor": "x"}, format="json").status_code in (
            403,
            405,
        )
    assert admin.get(f"/api/v1/audit/{one}/").json()["seq"] == AuditEntry.objects.get(pk=one).seq
    assert api_client_for(None).get("/api/v1/audit/").status_code in (401, 403)


def test_export_streams_csv_and_json_lines(api_client_for, users):
    some_entries(4)
    client = api_client_for(users["viewer"])
    response = client.get("/api/v1/audit/export/", {"format": "csv", "action": "drift_detected"})
    assert response.status_code == 200 and response.streaming
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["object_name"] for r in rows] == ["d0", "d1", "d2", "d3"]
    assert json.loads(rows[0]["after"]) == {"i": 0}
    response = client.get("/api/v1/audit/export/", {"format": "jsonl", "action": "drift_detected"})
    lines = [
        json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()
    ]
    assert [line["seq"] for line in lines] == [r.seq for r in entries(action="drift_detected")]
    assert lines[0]["hash"] == entries(action="drift_detected")[0].hash


def test_celery_tasks_act_as_system_task_and_audit_context_decorates():
    from types import SimpleNamespace

    from core.audit import signals

    signals._task_prerun(task_id="t-1", task=SimpleNamespace(name="agents.tasks.poll_status"))
    try:
        entry = record("drift_detected", object_type="rules.device", object_id=1, name="fw-1")
    finally:
        signals._task_postrun(task_id="t-1")
    assert (entry.actor, entry.channel, entry.request_id) == (
        "system:agents.tasks.poll_status",
        "system",
        "t-1",
    )

    @audit_context(actor="system:deploy", channel="system", reason="scheduled")
    def deploy() -> AuditEntry:
        return record(
            "deploy_state", object_type="agents.deployment", object_id=3, after={"state": "applied"}
        )

    first, second = deploy(), deploy()
    assert (first.actor, first.reason) == ("system:deploy", "scheduled")
    assert first.request_id != second.request_id  # one id per decorated call
    assert record("drift_repaired", object_type="rules.device").actor == "system"


def test_a_cascade_delete_records_every_row_in_one_append(django_assert_max_num_queries):
    rs = services.object_save(RuleSet(name="big"))
    services.object_save(AddressObject(name="office", value="198.18.0.0/24"))
    services.rules_bulk(
        ruleset=rs, create=[{"sources": ["office"], "comment": f"r{i}"} for i in range(60)]
    )
    before = AuditEntry.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        RuleSet.objects.get(pk=rs.pk).delete()
        raise RuntimeError("rolled back")
    assert AuditEntry.objects.count() == before
    with django_assert_max_num_queries(40):  # not 4 queries per deleted row
        RuleSet.objects.get(pk=rs.pk).delete()
    deleted = entries(action="delete")
    assert {e.object_type for e in deleted} >= {"rules.ruleset", "rules.rule", "rules.ruleaddress"}
    assert len([e for e in deleted if e.object_type == "rules.rule"]) == 60
    assert verify()["ok"]
