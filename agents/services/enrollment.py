"""Enrollment: one-time tokens for a device, and an agent binding its identity with one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents.client import console_public_key_b64
from agents.models import EnrollmentToken
from agents.selectors import enrollment_token_lookup
from core.audit.choices import AuditAction
from core.audit.services import record
from rampart_agent import protocol
from rules.choices import AgentStatus
from rules.models import Device


@dataclass
class IssuedToken:
    token: str
    record: EnrollmentToken


@transaction.atomic
def enrollment_token_create(
    *, device: Device, user: Any = None, ttl: int | None = None
) -> IssuedToken:
    """A new one-time token for `device`; the clear text exists only in the return value."""
    ttl = ttl if ttl is not None else settings.RAMPART.get("ENROLL_TOKEN_TTL", 3600)
    if not 60 <= ttl <= 30 * 86400:
        raise ValidationError({"ttl": ["must be 60 s .. 30 days"]})
    token = EnrollmentToken.PREFIX + secrets.token_urlsafe(32)
    token_record = EnrollmentToken.objects.create(
        device=device,
        digest=EnrollmentToken.digest_of(token),
        prefix=token[len(EnrollmentToken.PREFIX) :][:8],
        created_by=user if getattr(user, "is_authenticated", False) else None,
        expires_at=timezone.now() + timedelta(seconds=ttl),
    )
    return IssuedToken(token, token_record)


def _enroll_errors(
    public_key: str, fingerprint: str, listen_port: int, facts: dict | None
) -> dict[str, list[str]]:
    """Field-keyed errors of an enrollment request (empty: all good)."""
    errors: dict[str, list[str]] = {}
    try:
        protocol.load_public_key_b64(public_key)
    except (ValueError, TypeError):
        errors["public_key"] = ["must be base64 of a raw 32-byte Ed25519 public key"]
    if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
        errors["cert_fingerprint"] = ["must be the SHA-256 hex of the DER certificate"]
    if (
        isinstance(listen_port, bool)
        or not isinstance(listen_port, int)
        or not 0 < listen_port <= 65535
    ):
        errors["listen_port"] = ["must be 1..65535"]
    if facts is not None and not isinstance(facts, dict):
        errors["facts"] = ["must be an object"]
    return errors


def agent_enroll(
    *, token: str, public_key: str, cert_fingerprint: str, listen_port: int, facts: dict | None
) -> dict:
    """Bind an agent's key and certificate to the token's device; returns the console key.

    The token is spent with a conditional UPDATE, so two agents racing with one token
    cannot both enroll.
    """
    fingerprint = str(cert_fingerprint or "").replace(":", "").lower()
    errors = _enroll_errors(public_key, fingerprint, listen_port, facts)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        token_record = enrollment_token_lookup(token)
        if token_record is None:
            raise ValidationError({"token": ["invalid, expired or already used"]})
        spent = EnrollmentToken.objects.filter(pk=token_record.pk, used_at__isnull=True).update(
            used_at=timezone.now()
        )
        if not spent:
            raise ValidationError({"token": ["invalid, expired or already used"]})
        device = token_record.device
        record(
            AuditAction.UPDATE,
            device,
            after={"enrolled": True, "cert_fingerprint": fingerprint},
            extra={"token": token_record.prefix, "hostname": (facts or {}).get("hostname")},
        )
        device.agent_public_key = public_key
        device.agent_cert_fingerprint = fingerprint
        device.agent_port = listen_port
        device.facts = dict(facts or {})
        device.enrolled_at = timezone.now()
        device.status = AgentStatus.UNKNOWN
        Device.objects.filter(pk=device.pk).update(
            agent_public_key=device.agent_public_key,
            agent_cert_fingerprint=fingerprint,
            agent_port=listen_port,
            facts=device.facts,
            enrolled_at=device.enrolled_at,
            status=device.status,
            last_updated=timezone.now(),
        )
    return {
        "device": device.name,
        "device_id": device.pk,
        "console_public_key": console_public_key_b64(),
    }
