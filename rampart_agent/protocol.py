"""Console <-> agent wire protocol: keys, request/response signatures, bundle hash.

Pure (stdlib + `cryptography`): the console imports this module too, so signing and
verifying can never drift apart. See docs/agent-protocol.md for the contract.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import hmac
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.x509.oid import NameOID

from rampart_contract.bundle_hash import (  # noqa: F401 - part of the protocol
    BUNDLE_FIELDS,
    BUNDLE_FORMAT,
    HASHED_BUNDLE_FIELDS,
    bundle_hash,
)

PROTOCOL_VERSION = "rampart-v1"
DEFAULT_PORT = 8745
CLOCK_WINDOW = 60  # seconds either side of the agent's clock

HEADER_TIMESTAMP = "X-Rampart-Timestamp"
HEADER_NONCE = "X-Rampart-Nonce"
HEADER_SIGNATURE = "X-Rampart-Signature"

PATH_STATUS = "/v1/status"
PATH_APPLY = "/v1/apply"
PATH_CONFIRM = "/v1/confirm"
PATH_ROLLBACK = "/v1/rollback"
ENROLL_PATH = "/api/v1/agents/enroll/"


class ProtocolError(Exception):
    """A request or response that must be refused; `status` is the HTTP code to answer."""

    status = 400


class SignatureError(ProtocolError):
    status = 401


class ExpiredError(ProtocolError):
    status = 401


class ReplayError(ProtocolError):
    status = 409


# --- encoding helpers -------------------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    """The one JSON serialisation that is hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- keys -------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key_pem(data: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Base64 of the raw 32-byte public key (the form sent at enrollment)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key_b64(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("public key must be base64 of 32 raw Ed25519 bytes") from exc


def make_self_signed_cert(key: Ed25519PrivateKey, common_name: str, days: int = 3650) -> bytes:
    """A self-signed TLS certificate (PEM) for `key`; the console pins its fingerprint."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "agent")])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, algorithm=None)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_fingerprint(cert: bytes) -> str:
    """sha256 hex of the DER certificate; accepts PEM or DER bytes."""
    if cert.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    return hashes_sha256(cert)


def hashes_sha256(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


# --- requests (console -> agent) -------------------------------------------------------


def request_message(method: str, path: str, body: bytes, timestamp: int | str, nonce: str) -> bytes:
    """The exact bytes signed for a request; `path` is the request target as sent."""
    return (
        f"{PROTOCOL_VERSION}\n{method.upper()}\n{path}\n{sha256_hex(body)}\n{timestamp}\n{nonce}"
    ).encode()


def new_nonce() -> str:
    return os.urandom(16).hex()


def sign_request(
    key: Ed25519PrivateKey,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers to send with a console request."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    nonce = nonce or new_nonce()
    sig = key.sign(request_message(method, path, body, ts, nonce))
    return {
        HEADER_TIMESTAMP: str(ts),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: base64.b64encode(sig).decode(),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def verify_request(
    public_key: Ed25519PublicKey,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    window: int = CLOCK_WINDOW,
) -> tuple[int, str]:
    """Check a console request's signature and clock; return (timestamp, nonce).

    The nonce is not checked here (see `NonceCache`) so that a caller can verify first and
    only then remember the nonce: an unsigned request cannot fill the cache.
    """
    ts_text = _header(headers, HEADER_TIMESTAMP)
    nonce = _header(headers, HEADER_NONCE)
    sig_text = _header(headers, HEADER_SIGNATURE)
    if not ts_text or not nonce or not sig_text:
        raise SignatureError("missing signature headers")
    if len(nonce) != 32 or any(c not in "0123456789abcdef" for c in nonce):
        raise SignatureError("nonce must be 32 lowercase hex characters")
    try:
        ts = int(ts_text)
        sig = base64.b64decode(sig_text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise SignatureError("malformed timestamp or signature") from exc
    try:
        public_key.verify(sig, request_message(method, path, body, ts_text, nonce))
    except InvalidSignature as exc:
        raise SignatureError("bad signature") from exc
    now = time.time() if now is None else now
    if abs(now - ts) > window:
        raise ExpiredError(f"timestamp outside ±{window}s of the agent's clock")
    return ts, nonce


class NonceCache:
    """Nonces seen within the clock window; a nonce seen twice is a replay."""

    def __init__(self, window: int = CLOCK_WINDOW, max_entries: int = 100_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_add(self, nonce: str, timestamp: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            horizon = now - 2 * self.window
            while self._seen:
                oldest, seen_ts = next(iter(self._seen.items()))
                if seen_ts >= horizon and len(self._seen) < self.max_entries:
                    break
                self._seen.popitem(last=False)
            if nonce in self._seen:
                raise ReplayError("nonce already used")
            self._seen[nonce] = max(float(timestamp), now)


# --- responses (agent -> console) ------------------------------------------------------


def response_message(status: int, body: bytes, request_nonce: str) -> bytes:
    return (
        f"{PROTOCOL_VERSION}-response\n{int(status)}\n{sha256_hex(body)}\n{request_nonce}".encode()
    )


def sign_response(key: Ed25519PrivateKey, status: int, body: bytes, request_nonce: str) -> str:
    """Value of the response's X-Rampart-Signature header."""
    return base64.b64encode(key.sign(response_message(status, body, request_nonce))).decode()


def verify_response(
    public_key: Ed25519PublicKey,
    status: int,
    body: bytes,
    request_nonce: str,
    signature: str | None,
) -> None:
    """Raise SignatureError unless `signature` is the agent's over this response."""
    if not signature:
        raise SignatureError("unsigned agent response")
    try:
        public_key.verify(
            base64.b64decode(signature, validate=True),
            response_message(status, body, request_nonce),
        )
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise SignatureError("bad agent response signature") from exc


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
