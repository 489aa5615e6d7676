"""The console's HTTPS client for agents (docs/agent-protocol.md).

Agents use self-signed certificates, so chain verification is off and the certificate is
pinned instead: urllib3 compares the SHA-256 of the DER certificate with the fingerprint
stored at enrollment before a single byte of the request is sent. Every request is signed
with the console key and every answer must carry the agent's signature over the status,
the body and our nonce, so a replayed or forged answer is refused.

Applies ride a kept-alive connection (no TLS handshake per push), which is dropped once
the apply answered: confirms and status reads each open a fresh one, so they travel
only if the policy just applied lets a *new* connection from the console through (an old
one would pass the stateful rules however the new policy treats the console). A fresh
connection is opened by `_fresh_exchange` (the socket, TLS, the pin, http.client), not by a
throwaway requests Session: a status poll is otherwise ~1 ms of requests' own machinery.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from requests.adapters import HTTPAdapter

from compiler.document.parse_probes import worst_case_seconds
from rampart_agent import protocol

log = logging.getLogger("rampart.deploy")

CONNECT_TIMEOUT = 3.05
# longer than an apply may wait for another program's xtables lock, plus its own work: the
# console never gives up on an agent that is only waiting
READ_TIMEOUT = float(protocol.XTABLES_WAIT_SECONDS + 30)


class AgentError(Exception):
    """Base class of everything that can go wrong talking to an agent."""

    retryable = False


class AgentUnreachable(AgentError):
    """Connection refused, reset or timed out: worth retrying with backoff."""

    retryable = True


class AgentIdentityError(AgentError):
    """Wrong certificate, bad or missing response signature, device not enrolled.

    Never retried: the next attempt would meet the same impostor (or the same missing key).
    """


class AgentRefused(AgentError):
    """The agent answered (signed) with an error status; `body` is its JSON answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"agent answered {status}: {body.get('error') or body}")
        self.status = status
        self.body = body

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        # 5xx may be a restart in progress; 4xx are validation errors and final.
        return self.status >= 500


# --- the console key ------------------------------------------------------------------------

_key_lock = threading.Lock()
_key_cache: dict[str, Ed25519PrivateKey] = {}


def console_key_path() -> Path:
    return Path(settings.RAMPART["CONSOLE_KEY_FILE"])


def console_private_key() -> Ed25519PrivateKey:
    """The console's Ed25519 key, made on first use (file mode 0600, never logged).

    Created with O_EXCL so two processes starting at once cannot both write a key: the
    loser reads the winner's file.
    """
    path = console_key_path()
    with _key_lock:
        cached = _key_cache.get(str(path))
        if cached is not None:
            return cached
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = protocol.generate_private_key()
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # left by a killed process with this pid: ours to replace
                tmp.unlink()
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, protocol.private_key_to_pem(key))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # atomic, and fails if another process won the race
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        key = protocol.load_private_key_pem(path.read_bytes())
        _key_cache[str(path)] = key
        return key


def console_public_key_b64() -> str:
    return protocol.public_key_b64(console_private_key())


# --- transport ------------------------------------------------------------------------------


_tls_context: ssl.SSLContext | None = None


def _client_tls_context() -> ssl.SSLContext:
    """One TLS context per process, without the system CA store: the certificate is
    pinned, so loading the CAs (125 ms per connection here) would buy nothing."""
    global _tls_context
    if _tls_context is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # replaced by assert_fingerprint, checked before sending
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        _tls_context = ctx
    return _tls_context


class PinnedAdapter(HTTPAdapter):
    """An adapter whose pools accept exactly one certificate: the enrolled one."""

    def __init__(self, fingerprint: str, **kwargs: Any) -> None:
        self.fingerprint = fingerprint
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["assert_fingerprint"] = self.fingerprint
        pool_kwargs["cert_reqs"] = "CERT_NONE"
        pool_kwargs["assert_hostname"] = False
        pool_kwargs["ssl_context"] = _client_tls_context()
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


_sessions: OrderedDict[tuple[str, str], requests.Session] = OrderedDict()
_sessions_lock = threading.Lock()
MAX_SESSIONS = 256


def _new_session(fingerprint: str, pool_maxsize: int = 2) -> requests.Session:
    session = requests.Session()
    session.verify = False  # the pin replaces chain verification (self-signed certs)
    session.trust_env = False  # never send agent traffic through a proxy
    session.mount(
        "https://", PinnedAdapter(fingerprint, pool_connections=1, pool_maxsize=pool_maxsize)
    )
    return session


def _session(base_url: str, fingerprint: str) -> requests.Session:
    """A kept-alive session per (agent, certificate): a worker pushing to the same agents
    again and again skips the TLS handshake. Bounded, oldest dropped first."""
    key = (base_url, fingerprint)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is not None:
            _sessions.move_to_end(key)
            return session
        session = _new_session(fingerprint)
        _sessions[key] = session
        while len(_sessions) > MAX_SESSIONS:
            _sessions.popitem(last=False)[1].close()
        return session


def _drop_session(base_url: str, fingerprint: str) -> None:
    """Close the kept-alive connections to one agent (after an apply: none spans one)."""
    with _sessions_lock:
        session = _sessions.pop((base_url, fingerprint), None)
    if session is not None:
        session.close()


def reset_sessions() -> None:
    """Drop kept-alive connections (after a fork, or in tests)."""
    with _sessions_lock:
        while _sessions:
            _sessions.popitem()[1].close()


@dataclass
class AgentResponse:
    status: int
    body: dict[str, Any]
    elapsed_ms: float


def _fresh_exchange(
    address: str,
    port: int,
    fingerprint: str,
    request: tuple[str, str, bytes, dict[str, str]],
    timeout: tuple[float, float],
) -> tuple[int, bytes, str | None]:
    """One request on a connection of its own, closed after: TCP, TLS, the certificate
    checked against the pin before a byte of the request is sent, HTTP/1.1. Returns the
    status, the body and the signature header; raises AgentUnreachable or (pin)
    AgentIdentityError."""
    method, path, body, headers = request
    where = f"https://[{address}]:{port}" if ":" in address else f"https://{address}:{port}"
    tls: ssl.SSLSocket | None = None
    try:
        sock = socket.create_connection((address, port), timeout=timeout[0])
        try:
            tls = _client_tls_context().wrap_socket(sock)
        except BaseException:
            sock.close()
            raise
        der = tls.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).hexdigest() != fingerprint:
            raise AgentIdentityError(
                f"certificate of {where} does not match the pinned fingerprint"
            )
        tls.settimeout(timeout[1])
        conn = http.client.HTTPConnection(address, port)
        conn.sock = tls  # the request rides the checked TLS socket
        conn.request(method, path, body=body or None, headers={**headers, "Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader(protocol.HEADER_SIGNATURE)
    except ssl.SSLError as exc:
        raise AgentUnreachable(f"TLS error talking to {where}: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise AgentUnreachable(f"{where} unreachable: {type(exc).__name__}") from exc
    finally:
        if tls is not None:
            tls.close()


class AgentClient:
    """Signed, pinned calls to one device's agent."""

    def __init__(
        self,
        *,
        address: str,
        port: int,
        public_key_b64: str,
        cert_fingerprint: str,
        key: Ed25519PrivateKey | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> None:
        if not public_key_b64 or not cert_fingerprint:
            raise AgentIdentityError("device is not enrolled (no agent key or certificate pin)")
        host = f"[{address}]" if ":" in address else address
        self.address, self.port = address, port
        self.base_url = f"https://{host}:{port}"
        self.fingerprint = cert_fingerprint.replace(":", "").lower()
        try:
            self.agent_key = protocol.load_public_key_b64(public_key_b64)
        except ValueError as exc:
            raise AgentIdentityError(f"stored agent key is unusable: {exc}") from exc
        self.key = key or console_private_key()
        self.timeout = timeout or (CONNECT_TIMEOUT, READ_TIMEOUT)

    @classmethod
    def for_device(cls, device: Any, **kwargs: Any) -> AgentClient:
        return cls(
            address=device.address,
            port=device.agent_port,
            public_key_b64=device.agent_public_key,
            cert_fingerprint=device.agent_cert_fingerprint,
            **kwargs,
        )

    def request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        fresh: bool = False,
        connect_timeout: float | None = None,
        read_extra: float = 0.0,
    ) -> AgentResponse:
        """One signed request; returns only a verified answer, raises AgentError otherwise.

        `fresh`: on a connection of its own (TCP and TLS handshake), closed after it.
        `read_extra`: seconds the agent may spend before it answers beyond the usual (the
        apply's health probes).
        """
        connect = self.timeout[0] if connect_timeout is None else connect_timeout
        timeout = (connect, self.timeout[1] + read_extra)
        body = b"" if payload is None else protocol.canonical_json(payload)
        headers = protocol.sign_request(self.key, method, path, body)
        nonce = headers[protocol.HEADER_NONCE]
        if body:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        if fresh:
            status, content, signature = _fresh_exchange(
                self.address, self.port, self.fingerprint, (method, path, body, headers), timeout
            )
        else:
            status, content, signature = self._kept_alive(method, path, body, headers, timeout)
        elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            protocol.verify_response(self.agent_key, status, content, nonce, signature)
        except protocol.SignatureError as exc:
            # An agent that refused our own signature never read our nonce and signs its 401
            # over an empty one. Accepting that (still the agent's key) only ever yields a
            # failure, so a replay of it cannot make a push look successful.
            if status != 401 or not self._signed_without_nonce(content, signature):
                raise AgentIdentityError(f"{self.base_url} answered {status}: {exc}") from exc
        try:
            data = json.loads(content or b"{}")
        except ValueError as exc:
            raise AgentRefused(status, {"error": "answer is not JSON"}) from exc
        if not isinstance(data, dict):
            data = {"error": "answer is not a JSON object", "answer": data}
        if status >= 400:
            raise AgentRefused(status, data)
        return AgentResponse(status, data, elapsed_ms)

    def _kept_alive(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        timeout: tuple[float, float],
    ) -> tuple[int, bytes, str | None]:
        """One request over the agent's kept-alive session (the pin checked by its pool)."""
        session = _session(self.base_url, self.fingerprint)
        try:
            resp = session.request(
                method, self.base_url + path, data=body or None, headers=headers, timeout=timeout
            )
        except requests.exceptions.SSLError as exc:
            if "fingerprint" in str(exc).lower():
                raise AgentIdentityError(
                    f"certificate of {self.base_url} does not match the pinned fingerprint"
                ) from exc
            raise AgentUnreachable(f"TLS error talking to {self.base_url}: {exc}") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise AgentUnreachable(f"{self.base_url} unreachable: {type(exc).__name__}") from exc
        return resp.status_code, resp.content, resp.headers.get(protocol.HEADER_SIGNATURE)

    def _signed_without_nonce(self, body: bytes, signature: str | None) -> bool:
        try:
            protocol.verify_response(self.agent_key, 401, body, "", signature)
        except protocol.SignatureError:
            return False
        return True

    def status(self, since: int | None = None) -> dict[str, Any]:
        """On a fresh connection: a kept-alive one would report an agent "online" that new
        connections (the next push, the confirm) can no longer reach.

        `since`: the generation of the last full status; an agent on which nothing changed
        answers `{"unchanged": true, "generation": G}`. The query is part of the signed
        path (rampart_agent/generation.py); send it only to an agent that gave a generation.
        """
        path = protocol.PATH_STATUS if since is None else f"{protocol.PATH_STATUS}?since={since}"
        return self.request("GET", path, fresh=True).body

    def apply(
        self,
        *,
        bundle: dict[str, Any],
        version: int,
        deployment: str,
        confirm_timeout: int,
        probes: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Over the kept-alive connection, which is dropped after: none spans an apply."""
        try:
            return self.request(
                "POST",
                protocol.PATH_APPLY,
                {
                    "bundle": bundle,
                    "version": version,
                    "deployment": deployment,
                    "confirm_timeout": confirm_timeout,
                    "probes": probes or [],
                },
                read_extra=worst_case_seconds(probes or []),
            ).body
        finally:
            _drop_session(self.base_url, self.fingerprint)

    def confirm(self, version: int, connect_timeout: float | None = None) -> dict[str, Any]:
        """On a fresh connection, opened after the apply answered: the confirm proves the
        new policy lets the console in (the agent refuses one on an older connection)."""
        return self.request(
            "POST",
            protocol.PATH_CONFIRM,
            {"version": version},
            fresh=True,
            connect_timeout=connect_timeout,
        ).body

    def rollback(self) -> dict[str, Any]:
        return self.request("POST", protocol.PATH_ROLLBACK, {}).body
