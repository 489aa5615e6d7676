"""Console <-> agent wire protocol: keys, request/response signatures, bundle hash.

Pure (stdlib + `cryptography`): the console imports this module too, so signing and
verifying can never drift apart. The signed bytes, header names and freshness window are
the contract's (rampart_contract/signing.py); this module adds the Ed25519 keys, the
signatures and the replay cache. See docs/agent-protocol.md for the contract.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

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
from rampart_contract.canonical import canonical_json  # noqa: F401 - part of the protocol
from rampart_contract.signing import (  # noqa: F401 - part of the protocol
    CLOCK_WINDOW,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    PROTOCOL_VERSION,
    header,
    is_fresh,
    is_valid_nonce,
    new_nonce,
    request_message,
    response_message,
    sha256_hex,
)

DEFAULT_PORT = 8745

PATH_STATUS = "/v1/status"
PATH_APPLY = "/v1/apply"
PATH_CONFIRM = "/v1/confirm"
PATH_ROLLBACK = "/v1/rollback"
ENROLL_PATH = "/api/v1/agents/enroll/"

# How long an apply waits for the xtables lock another program holds (iptables-legacy
# serialises every table change on it) before it gives up, changing nothing. The console's
# read timeout is derived from it, so it never gives up on an agent that is only waiting.
XTABLES_WAIT_SECONDS = 60


class ProtocolError(Exception):
    """A request or response that must be refused; `status` is the HTTP code to answer."""

    status = 400


class SignatureError(ProtocolError):
    status = 401


class ExpiredError(ProtocolError):
    status = 401


class ReplayError(ProtocolError):
    status = 409


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


def check_request_headers(
    headers: Mapping[str, str], *, now: float | None = None, window: int = CLOCK_WINDOW
) -> tuple[str, str, bytes]:
    """The checks a request's signature headers allow before its body is read: present,
    well formed and fresh. Returns (timestamp text, nonce, signature bytes)."""
    ts_text = header(headers, HEADER_TIMESTAMP)
    nonce = header(headers, HEADER_NONCE)
    sig_text = header(headers, HEADER_SIGNATURE)
    if not ts_text or not nonce or not sig_text:
        raise SignatureError("missing signature headers")
    if not is_valid_nonce(nonce):
        raise SignatureError("nonce must be 32 lowercase hex characters")
    try:
        ts = int(ts_text)
        sig = base64.b64decode(sig_text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise SignatureError("malformed timestamp or signature") from exc
    if len(sig) != 64:
        raise SignatureError("malformed signature (an Ed25519 signature is 64 bytes)")
    now = time.time() if now is None else now
    if not is_fresh(ts, now, window):
        raise ExpiredError(f"timestamp outside ±{window}s of the agent's clock")
    return ts_text, nonce, sig


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
    ts_text, nonce, sig = check_request_headers(headers, now=now, window=window)
    try:
        public_key.verify(sig, request_message(method, path, body, ts_text, nonce))
    except InvalidSignature as exc:
        raise SignatureError("bad signature") from exc
    return int(ts_text), nonce


class NonceCache:
    """Nonces seen within the clock window; a nonce seen twice is a replay."""

    def __init__(self, window: int = CLOCK_WINDOW, max_entries: int = 100_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, nonce: str) -> bool:
        """Whether `nonce` was used (a replay can be refused before its body is read)."""
        with self._lock:
            return nonce in self._seen

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
