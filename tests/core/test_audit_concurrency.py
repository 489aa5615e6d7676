"""Two writers appending at once must not fork the hash chain (PostgreSQL: real row locks)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from core.audit.context import audit_context
from core.audit.models import AuditEntry
from core.audit.services import record, verify
from rules import services
from rules.models import AddressObject

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL: SQLite serialises writers itself (set DATABASE_URL to run)",
)

PER_WRITER = 40


def _writer(n: int, errors: list, barrier: threading.Barrier) -> None:
    try:
        barrier.wait()
        with audit_context(actor=f"system:worker-{n}", channel="system"):
            for i in range(PER_WRITER):
                with transaction.atomic():
                    if i % 2:
                        services.object_save(
                            AddressObject(name=f"w{n}-{i}", value=f"198.18.{n}.{i + 1}")
                        )
                    else:
                        record(
                            "drift_detected", object_type="rules.device", object_id=i, name=f"w{n}"
                        )
    except Exception as exc:  # surfaced by the test below
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_the_chain_valid():
    errors: list = []
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=_writer, args=(n, errors, barrier)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    result = verify()
    assert result["ok"], result
    actors = set(AuditEntry.objects.values_list("actor", flat=True))
    assert {"system:worker-1", "system:worker-2"} <= actors
    assert AuditEntry.objects.filter(actor__startswith="system:worker-").count() == 2 * PER_WRITER
    seqs = list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
