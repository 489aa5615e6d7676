"""Claim, complete and replay idempotency keys (the `idempotent` view decorator uses these).

A key is claimed by inserting its row: the unique constraint makes exactly one of several
concurrent requests the owner, in every process. The others wait for the owner's answer and
replay it. Only successful (2xx) answers are kept: a failed request releases its key, so
the client can correct the cause and retry with the same key.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from rampart_contract.canonical import canonical_json

from .models import IdempotencyKey

LIFETIME = timedelta(hours=24)
WAIT_SECONDS = 10.0
POLL_SECONDS = 0.05


class KeyReused(Exception):
    """The key was used before for a different request (method, path, query or body)."""


class KeyInProgress(Exception):
    """The first request with this key is still running after the wait."""


def request_hash(*, method: str, path: str, query: list[tuple[str, list[str]]], body: bytes) -> str:
    """What "the same request" means: method, path, query parameters (any order) and body."""
    parts = [method.upper(), path, sorted(query), hashlib.sha256(body).hexdigest()]
    return hashlib.sha256(canonical_json(parts)).hexdigest()


def key_claim(
    *, user, key: str, method: str, path: str, digest: str
) -> tuple[IdempotencyKey, bool]:
    """The key's row and whether it is new (the caller does the work) rather than a finished
    one to replay. Raises KeyReused for another request's key, KeyInProgress after the wait."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        # Expired keys of everyone go here: an indexed range delete, no periodic task needed.
        IdempotencyKey.objects.filter(created__lt=timezone.now() - LIFETIME).delete()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    user=user, key=key, method=method, path=path, request_hash=digest
                )
            return record, True
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(user=user, key=key).first()
        if existing is None:  # released (its request failed) between our two queries
            continue
        if (existing.method, existing.path, existing.request_hash) != (method, path, digest):
            raise KeyReused(key)
        if existing.status is not None:
            return existing, False
        if time.monotonic() > deadline:
            raise KeyInProgress(key)
        time.sleep(POLL_SECONDS)


def key_complete(*, record: IdempotencyKey, status: int, body: object) -> None:
    """Keep the answer to replay."""
    IdempotencyKey.objects.filter(pk=record.pk).update(status=status, response_body=body)


def key_release(*, record: IdempotencyKey) -> None:
    """Forget a claim whose request failed, so the same key can be retried."""
    IdempotencyKey.objects.filter(pk=record.pk).delete()
