"""What the HTTPS API spends on a request before it knows the console sent it.

Nothing but the headers is read until they pass every check that needs no body: the
declared length (present, numeric, under the route's limit), the signature headers (there,
well formed, fresh) and the nonce (not seen). Only then is the body read, within a budget
of bytes read at once over all connections, and its signature verified. Unsigned floods
cost the agent a header parse each; forged but well-formed headers cost at most the budget.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email.message import Message

from rampart_agent import protocol
from rampart_agent.errors import AgentError

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Limits:
    """The API's resource limits (`serve --max-connections` etc.)."""

    max_connections: int = 64  # connections served at once; more are closed at accept
    max_bundle_bytes: int = 64 * MIB  # body of POST /v1/apply (a 50k-rule bundle is ~8 MB)
    max_read_bytes: int = 64 * MIB  # bodies being read at once, all connections together
    small_body: int = 64 * KIB  # body of every other route

    def body_limit(self, path: str) -> int:
        return self.max_bundle_bytes if path == protocol.PATH_APPLY else self.small_body


class ReadBudget:
    """Bytes of request bodies being read at once; a request that does not fit is refused
    at once (503) rather than queued, so a flood cannot hold the console's requests."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if size and self._used + size > self.total:
                return False
            self._used += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self._used -= size


def content_length(method: str, path: str, headers: Message, limits: Limits) -> int:
    """The body length the headers declare, refused (400/411/413) before any body byte."""
    if headers.get("Transfer-Encoding"):
        raise AgentError(411, "Transfer-Encoding is not accepted: send a Content-Length")
    if len(headers.get_all("Content-Length") or ()) > 1:
        raise AgentError(400, "more than one Content-Length header")
    text = headers.get("Content-Length")
    if text is None:
        if method == "POST":
            raise AgentError(411, "a POST needs a Content-Length header")
        return 0
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        raise AgentError(400, f"Content-Length must be a number of bytes, not {text[:40]!r}")
    length = int(text)
    limit = limits.body_limit(path)
    if length > limit:
        raise AgentError(413, f"body of {length} bytes is over the {limit}-byte limit of {path}")
    return length


def check_headers(
    headers: Message, nonces: protocol.NonceCache, *, now: float
) -> tuple[str, str, bytes]:
    """Signature headers present, well formed and fresh, nonce unseen: (ts, nonce, sig)."""
    try:
        ts_text, nonce, sig = protocol.check_request_headers(dict(headers.items()), now=now)
        if nonces.seen(nonce):
            raise protocol.ReplayError("nonce already used")
    except protocol.ProtocolError as exc:
        raise AgentError(exc.status, str(exc)) from exc
    return ts_text, nonce, sig
