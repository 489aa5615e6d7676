"""What the HTTPS API spends on a request before it knows the console sent it.

Nothing but the headers is read until they pass every check that needs no body: the
declared length (present, numeric, under the route's limit), the signature headers (there,
well formed, fresh) and the nonce (not seen). Only then is the body read, within a budget
of bytes read at once over all connections, and its signature verified. Unsigned floods
cost the agent a header parse each; forged but well-formed headers cost at most the budget.
Until a request on it is authenticated, a connection's reads are bounded in total time and
its headers in bytes (`GuardedReader`): the per-read timeout alone let a peer sending a byte
every few seconds hold a connection slot, or the read budget, for ever.
"""

from __future__ import annotations

import io
import socket
import threading
import time
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
    header_seconds: float = 30.0  # TLS handshake, request line and headers, in all
    max_header_bytes: int = 32 * KIB  # request line and headers before authentication
    min_body_rate: int = 64 * KIB  # bytes/s, at least, of a body read before it verifies

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


class PreAuthLimit(TimeoutError):
    """A limit of a connection not yet authenticated ran out (time or header bytes); a
    TimeoutError, so http.server closes the connection as for a silent peer."""


class GuardedReader(io.RawIOBase):
    """A connection's reads: each within the silence allowed (`timeout`), and, until a
    request on it is authenticated, the phase (headers, then body) within a deadline and the
    headers within a byte allowance. Authenticated (`trust`), only the timeout remains."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self.timeout = timeout
        self.deadline: float | None = None  # time.monotonic() by which the phase must end
        self.allowance: int | None = None  # bytes the phase may still read
        self._phase = ""

    def readable(self) -> bool:
        return True

    def expect_headers(self, limits: Limits) -> None:
        self._phase = f"TLS handshake and headers within {limits.header_seconds:g} s"
        self.deadline = time.monotonic() + limits.header_seconds
        self.allowance = limits.max_header_bytes

    def expect_body(self, length: int, limits: Limits) -> None:
        seconds = self.timeout + length / limits.min_body_rate
        self._phase = f"body of {length} bytes within {seconds:g} s"
        self.deadline = time.monotonic() + seconds
        self.allowance = None

    def trust(self, timeout: float) -> None:
        self.deadline = self.allowance = None
        self.timeout = timeout
        self._sock.settimeout(timeout)

    # typeshed's WriteableBuffer has no runtime name before Python 3.12 (collections.abc.Buffer)
    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if self.allowance is not None:
            if self.allowance <= 0:
                raise PreAuthLimit(f"request line and headers over the byte limit ({self._phase})")
            view = view[: self.allowance]
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise PreAuthLimit(f"not received in time: {self._phase}")
            self._sock.settimeout(min(self.timeout, left))
        count = self._sock.recv_into(view)
        if self.allowance is not None:
            self.allowance -= count
        return count


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
