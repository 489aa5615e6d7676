"""Request and response signing, the part without keys: the exact bytes that are signed,
the headers that carry a signature, the nonce format and the freshness window.

Standard library only, so this one definition is what the console signs and the agent
verifies; the Ed25519 keys, signatures and checks live in rampart_agent/protocol.py.
See docs/agent-protocol.md.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

PROTOCOL_VERSION = "rampart-v1"
CLOCK_WINDOW = 60  # seconds either side of the agent's clock

HEADER_TIMESTAMP = "X-Rampart-Timestamp"
HEADER_NONCE = "X-Rampart-Nonce"
HEADER_SIGNATURE = "X-Rampart-Signature"

NONCE_BYTES = 16  # sent as 32 lowercase hex characters
_HEX = frozenset("0123456789abcdef")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_message(method: str, path: str, body: bytes, timestamp: int | str, nonce: str) -> bytes:
    """The exact bytes signed for a request; `path` is the request target as sent."""
    return (
        f"{PROTOCOL_VERSION}\n{method.upper()}\n{path}\n{sha256_hex(body)}\n{timestamp}\n{nonce}"
    ).encode()


def response_message(status: int, body: bytes, request_nonce: str) -> bytes:
    """The exact bytes an agent signs for its answer to the request with this nonce."""
    return (
        f"{PROTOCOL_VERSION}-response\n{int(status)}\n{sha256_hex(body)}\n{request_nonce}".encode()
    )


def new_nonce() -> str:
    return os.urandom(NONCE_BYTES).hex()


def is_valid_nonce(nonce: str) -> bool:
    """A nonce as `new_nonce` makes it: 32 lowercase hex characters."""
    return len(nonce) == 2 * NONCE_BYTES and all(c in _HEX for c in nonce)


def is_fresh(timestamp: float, now: float, window: int = CLOCK_WINDOW) -> bool:
    """A request's timestamp is within `window` seconds of the receiver's clock."""
    return abs(now - timestamp) <= window


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name (HTTP names are case-insensitive)."""
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None
