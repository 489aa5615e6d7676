"""The anchored audit chain: keyed MACs, checkpoints outside the database, and a verify that
names every break (edit + re-hash, tail truncation + head rewind, deleted rows)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from core.audit import checkpoints
from core.audit.chain import KEYED_PREFIX, canonical, entry_hash
from core.audit.choices import AuditChain
from core.audit.keys import audit_key
from core.audit.models import AuditChainHead, AuditEntry, AuditVerification
from core.audit.selectors import audit_status
from core.audit.services import record
from core.audit.tasks import verify_chain, write_chain_checkpoint
from core.audit.verification import verify, write_checkpoint
from tests.core.audit_support import entries, some_entries

pytestmark = pytest.mark.django_db
tampering = pytest.mark.skipif(
    connection.vendor == "postgresql", reason="the PostgreSQL trigger refuses the tampering"
)


@pytest.fixture(autouse=True)
def key_file(settings, tmp_path):
    """A key of this test's own, in a file the database never sees."""
    path = tmp_path / "keys" / "audit-key"
    settings.RAMPART = {**settings.RAMPART, "AUDIT_KEY": "", "AUDIT_KEY_FILE": str(path)}
    return path


def _sql(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _reseal(from_seq: int, *, chain: int | None = None) -> None:
    """What someone with database access but without the key can do: recompute every
    entry from `from_seq` on with SHA-256, relink them and move the head row along."""
    rows = entries(seq__gte=from_seq)
    before = AuditEntry.objects.filter(seq__lt=from_seq).order_by("-seq").first()
    prev = before.hash if before else "0" * 64
    for row in rows:
        row.prev_hash = prev
        row.hash = prev = entry_hash(row)
        _sql(
            "UPDATE audit_auditentry SET prev_hash = %s, hash = %s, chain = %s WHERE id = %s",
            [row.prev_hash, row.hash, chain if chain is not None else row.chain, row.pk],
        )
    AuditChainHead.objects.filter(pk=1).update(hash=prev)


def _kinds(result: dict) -> list[tuple[int | None, str]]:
    return [(b["seq"], b["kind"]) for b in result["breaks"]]


# --- the keyed chain ----------------------------------------------------------------------------


def test_entries_are_sealed_with_a_keyed_mac_whose_key_is_outside_the_database(key_file):
    rows = some_entries(3)
    key = key_file.read_bytes().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key) == 64
    for row in rows:
        assert row.chain == AuditChain.KEYED
        assert row.hash == hmac.new(key, KEYED_PREFIX + canonical(row), hashlib.sha256).hexdigest()
        assert row.hash != entry_hash(row)
    dump = json.dumps(list(AuditEntry.objects.values()), default=str)
    assert key.decode() not in dump
    assert verify()["ok"] and verify()["keyed_from"] == rows[0].seq


def test_the_environment_key_wins_and_a_short_one_is_refused(settings):
    settings.RAMPART = {**settings.RAMPART, "AUDIT_KEY": "k" * 32}
    row = some_entries(1)[0]
    expected = hmac.new(b"k" * 32, KEYED_PREFIX + canonical(row), hashlib.sha256).hexdigest()
    assert row.hash == expected
    settings.RAMPART = {**settings.RAMPART, "AUDIT_KEY": "short"}
    with pytest.raises(ImproperlyConfigured):
        audit_key()


def test_the_key_file_defaults_to_beside_the_console_key(settings, tmp_path):
    settings.RAMPART = {
        **settings.RAMPART,
        "AUDIT_KEY_FILE": "",
        "CONSOLE_KEY_FILE": str(tmp_path / "console-key.pem"),
    }
    audit_key()
    assert (tmp_path / "audit-key").exists()


def test_a_temporary_key_file_left_by_a_killed_process_does_not_stop_the_audit(key_file):
    """A process killed while making the key leaves `.audit-key.<pid>.tmp`; a later process
    with the same pid (containers reuse small pids) must not fail every audited write."""
    key_file.parent.mkdir(parents=True)
    stale = key_file.with_name(f".{key_file.name}.{os.getpid()}.tmp")
    stale.write_text("half a key")
    key = audit_key()
    assert len(key) == 64 and key_file.read_bytes().strip() == key
    assert not stale.exists()


@tampering
def test_plain_entries_from_before_the_key_still_verify_and_the_keyed_chain_continues():
    old = some_entries(3)
    _reseal(old[0].seq, chain=AuditChain.PLAIN)  # as the previous release wrote them
    some_entries(2)
    rows = entries()
    assert [r.chain for r in rows] == [1, 1, 1, 2, 2]
    assert rows[3].prev_hash == rows[2].hash  # the keyed chain starts over the last plain hash
    result = verify()
    assert result["ok"], result["breaks"]
    assert result["keyed_from"] == rows[3].seq


# --- tampering: each kind is detected and named -------------------------------------------------


@tampering
def test_an_edit_re_hashed_to_the_end_is_caught_and_every_resealed_entry_named():
    rows = some_entries(6)
    _sql("UPDATE audit_auditentry SET actor = %s WHERE id = %s", ["mallory", rows[2].pk])
    _reseal(rows[2].seq)
    result = verify()
    assert not result["ok"]
    assert _kinds(result) == [(r.seq, "edited") for r in rows[2:]]
    assert "without the audit key" in result["first_broken"]["problem"]
    # Passing the re-hashed entries off as plain ones is a downgrade, named as such.
    _reseal(rows[2].seq, chain=AuditChain.PLAIN)
    assert _kinds(verify()) == [(r.seq, "downgrade") for r in rows[2:]]


@tampering
def test_the_same_attack_passes_on_a_plain_chain_which_is_why_the_key_exists():
    rows = some_entries(4)
    _reseal(rows[0].seq, chain=AuditChain.PLAIN)
    _sql("UPDATE audit_auditentry SET actor = %s WHERE id = %s", ["mallory", rows[1].pk])
    _reseal(rows[1].seq)
    assert verify()["ok"]  # a plain SHA-256 chain cannot tell: only keyed entries can


@tampering
def test_deleting_the_newest_entries_and_rewinding_the_head_is_caught_by_the_checkpoint():
    rows = some_entries(6)
    cp = write_checkpoint()
    assert cp.seq == rows[-1].seq and cp.head == rows[-1].hash
    _sql("DELETE FROM audit_auditentry WHERE seq > %s", [rows[3].seq])
    AuditChainHead.objects.filter(pk=1).update(seq=rows[3].seq, hash=rows[3].hash)
    result = verify()
    assert not result["ok"]
    kinds = _kinds(result)
    assert (rows[4].seq, "truncated") in kinds and (rows[3].seq, "rewound") in kinds
    assert f"records #{rows[-1].seq}" in result["first_broken"]["problem"]
    # Without the checkpoint the rewound chain is self-consistent: the anchor is what tells.
    checkpoints.checkpoint_dir().rename(checkpoints.checkpoint_dir().with_name("moved"))
    assert verify()["ok"]


@tampering
def test_deleting_the_newest_entries_without_touching_the_head_row_is_caught():
    rows = some_entries(4)
    _sql("DELETE FROM audit_auditentry WHERE id = %s", [rows[-1].pk])
    result = verify()
    assert _kinds(result) == [(rows[-1].seq, "truncated")]
    assert "deleted" in result["first_broken"]["problem"]


@tampering
def test_rows_deleted_in_the_middle_are_each_named():
    rows = some_entries(7)
    _sql(
        "DELETE FROM audit_auditentry WHERE id IN (%s, %s, %s)",
        [r.pk for r in rows[1:4:2]] + [rows[4].pk],
    )
    result = verify()
    assert _kinds(result) == [(rows[2].seq, "missing"), (rows[5].seq, "missing")]
    assert f"#{rows[1].seq} are missing" in result["breaks"][0]["problem"]
    assert f"#{rows[3].seq}–#{rows[4].seq}" in result["breaks"][1]["problem"]


@tampering
def test_every_break_is_listed_by_verify_the_command_and_the_api(api_client_for, users, capsys):
    rows = some_entries(6)
    for row in (rows[1], rows[4]):
        _sql("UPDATE audit_auditentry SET reason = %s WHERE id = %s", ["forged", row.pk])
    result = verify()
    assert _kinds(result) == [(rows[1].seq, "edited"), (rows[4].seq, "edited")]
    with pytest.raises(CommandError, match=f"2 breaks; first at #{rows[1].seq}"):
        call_command("audit_verify")
    err = capsys.readouterr().err
    assert f"#{rows[1].seq} [edited]" in err and f"#{rows[4].seq} [edited]" in err
    body = api_client_for(users["viewer"]).get("/api/v1/audit/verify/").json()
    assert not body["ok"] and body["break_count"] == 2
    assert [b["seq"] for b in body["breaks"]] == [rows[1].seq, rows[4].seq]


@tampering
def test_an_inserted_row_is_caught():
    rows = some_entries()
    forged = AuditEntry.objects.get(pk=rows[3].pk)
    _sql("UPDATE audit_auditentry SET seq = seq + 1000 WHERE seq >= %s", [rows[3].seq])
    _sql("UPDATE audit_auditentry SET seq = seq - 999 WHERE seq >= 1000", [])
    forged.pk, forged.seq, forged.hash = None, rows[3].seq, "f" * 64
    AuditEntry.objects.bulk_create([forged])
    result = verify()
    assert result["first_broken"]["seq"] == rows[3].seq
    assert (rows[3].seq + 1, "link") in _kinds(result)


@tampering
def test_a_row_rewritten_after_its_checkpoint_is_named_against_it():
    rows = some_entries(3)
    write_checkpoint()
    _sql("UPDATE audit_auditentry SET hash = %s WHERE id = %s", ["e" * 64, rows[-1].pk])
    AuditChainHead.objects.filter(pk=1).update(hash="e" * 64)
    assert (rows[-1].seq, "checkpoint") in _kinds(verify())


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only"
)
def test_postgresql_refuses_update_and_delete_of_entries():
    rows = some_entries(2)
    for sql in (
        "UPDATE audit_auditentry SET actor = 'mallory' WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [rows[0].pk])
    assert verify()["ok"]


# --- checkpoints --------------------------------------------------------------------------------


def test_checkpoints_are_signed_lines_appended_to_a_file_and_logged(caplog):
    some_entries(2)
    with caplog.at_level(logging.INFO, logger="rampart.audit.checkpoint"):
        first = write_checkpoint()
        record("drift_detected", object_type="rules.device", object_id=9, name="d9")
        second = write_checkpoint()
    files = sorted(checkpoints.checkpoint_dir().glob("checkpoints-*.jsonl"))
    assert len(files) == 1
    lines = files[0].read_text().splitlines()
    assert lines == [first.line(), second.line()]
    assert json.loads(lines[1])["seq"] == second.seq == first.seq + 1
    assert [r.getMessage() for r in caplog.records] == [
        f"audit checkpoint {first.line()}",
        f"audit checkpoint {second.line()}",
    ]
    assert checkpoints.last_checkpoint()[0] == checkpoints.parse(
        lines[1], audit_key(), source=f"{files[0].name}:2"
    )


def test_a_forged_checkpoint_line_is_named_and_the_last_genuine_one_used():
    rows = some_entries(2)
    write_checkpoint()
    path = next(checkpoints.checkpoint_dir().glob("checkpoints-*.jsonl"))
    genuine = json.loads(path.read_text())
    forged = {**genuine, "seq": 1, "head": rows[0].hash}
    with path.open("a") as f:
        f.write(json.dumps(forged) + "\n")
    result = verify()
    assert _kinds(result) == [(None, "checkpoint")]
    assert "invalid signature" in result["first_broken"]["problem"]
    assert result["checkpoint"]["seq"] == genuine["seq"]


def test_a_checkpoint_line_with_a_non_ascii_signature_is_named_not_a_crash():
    """hmac.compare_digest raises TypeError on non-ASCII text: a forged line must still be
    reported as forged, and the genuine checkpoint before it used."""
    some_entries(2)
    write_checkpoint()
    path = next(checkpoints.checkpoint_dir().glob("checkpoints-*.jsonl"))
    genuine = json.loads(path.read_text())
    with path.open("a") as f:
        f.write(json.dumps({**genuine, "sig": "\u00e9" * 64}) + "\n")
    result = verify()
    assert _kinds(result) == [(None, "checkpoint")]
    assert "invalid signature" in result["first_broken"]["problem"]
    assert result["checkpoint"]["seq"] == genuine["seq"]


def _broken_sink(cp) -> None:
    raise OSError("disk full")


def test_a_failing_sink_does_not_stop_the_others(settings):
    settings.RAMPART = {
        **settings.RAMPART,
        "AUDIT_CHECKPOINT_SINKS": [
            f"{__name__}._broken_sink",
            "core.audit.checkpoints.directory_sink",
        ],
    }
    some_entries(1)
    cp = write_checkpoint()
    assert checkpoints.last_checkpoint()[0].seq == cp.seq


@tampering
def test_no_checkpoint_is_written_over_a_broken_tail():
    rows = some_entries(3)
    write_checkpoint()
    record("drift_detected", object_type="rules.device", object_id=9, name="d9")
    _sql("UPDATE audit_auditentry SET actor = %s WHERE seq = %s", ["mallory", rows[-1].seq + 1])
    assert write_checkpoint() is None
    assert checkpoints.last_checkpoint()[0].seq == rows[-1].seq


def test_the_checkpoint_directory_defaults_to_var(settings):
    assert django_settings.RAMPART["AUDIT_CHECKPOINT_DIR"]  # the test fixture moves it to tmp
    assert "rampart-audit-checkpoint" in settings.CELERY_BEAT_SCHEDULE
    assert settings.CELERY_BEAT_SCHEDULE["rampart-audit-verify"]["task"] == verify_chain.name


# --- results: the command, the schedule, the status ---------------------------------------------


def test_status_is_never_then_ok_with_a_checkpoint_then_broken(capsys):
    assert audit_status()["state"] == "never" and audit_status()["checkpoint_seq"] is None
    rows = some_entries(3)
    call_command("audit_verify")
    assert "intact: 3 entries" in capsys.readouterr().out
    status = audit_status()
    assert status["state"] == "ok" and status["break_count"] == 0
    assert status["checkpoint_seq"] == rows[-1].seq and 0 <= status["checkpoint_age"] < 60
    if connection.vendor != "postgresql":
        _sql("UPDATE audit_auditentry SET actor = %s WHERE id = %s", ["mallory", rows[0].pk])
        with pytest.raises(CommandError):
            call_command("audit_verify")
        status = audit_status()
        assert status["state"] == "broken" and status["break_count"] == 1
        assert status["checkpoint_seq"] == rows[-1].seq  # no checkpoint over a broken chain


def test_the_scheduled_tasks_verify_and_checkpoint():
    rows = some_entries(2)
    assert write_chain_checkpoint() == rows[-1].seq
    assert verify_chain() == {"ok": True, "checked": 2, "breaks": 0}
    run = AuditVerification.objects.get()
    assert (run.trigger, run.ok, run.checkpoint_seq) == ("schedule", True, rows[-1].seq)


def test_the_api_verify_records_the_result_but_writes_no_checkpoint(api_client_for, users):
    some_entries(3)
    body = api_client_for(users["viewer"]).get("/api/v1/audit/verify/").json()
    assert body["ok"] and body["checked"] == AuditEntry.objects.count() and body["breaks"] == []
    assert AuditVerification.objects.get().trigger == "api"
    assert checkpoints.last_checkpoint()[0] is None
    assert not os.path.exists(checkpoints.checkpoint_dir())


def test_the_syslog_sink_hands_the_signed_line_to_syslog(settings, monkeypatch):
    sent = []
    monkeypatch.setattr(checkpoints.syslog, "syslog", lambda priority, text: sent.append(text))
    settings.RAMPART = {
        **settings.RAMPART,
        "AUDIT_CHECKPOINT_SINKS": ["core.audit.checkpoints.syslog_sink"],
    }
    some_entries(1)
    cp = write_checkpoint()
    assert sent == [f"audit checkpoint {cp.line()}"]


@tampering
def test_a_head_row_rewritten_behind_the_remaining_entries_is_named():
    rows = some_entries(4)
    AuditChainHead.objects.filter(pk=1).update(seq=rows[1].seq, hash=rows[1].hash)
    assert _kinds(verify()) == [(rows[1].seq, "head")]


def test_only_the_newest_results_are_kept(monkeypatch, api_client_for, users):
    monkeypatch.setattr("core.audit.verification.KEPT_VERIFICATIONS", 2)
    client = api_client_for(users["viewer"])
    for _ in range(4):
        client.get("/api/v1/audit/verify/")
    assert AuditVerification.objects.count() == 2
