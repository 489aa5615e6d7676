"""A real `rampart-agent serve` subprocess (recording dataplane, loopback) and a console
that signs its requests: for the tests that need the agent as a separate process."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import requests

from rampart_agent import protocol
from rampart_agent.state import StateDir

AGENT = [sys.executable, "-m", "rampart_agent.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_agent(state_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A one-shot `rampart-agent ARGS` on the same state directory (recording dataplane)."""
    return subprocess.run(
        [*AGENT, *args, "--state-dir", str(state_dir), "--dataplane", "recording"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ServeProcess:
    """`rampart-agent serve` on 127.0.0.1, enrolled with a console key of the test's."""

    def __init__(self, state_dir: Path, *extra: str) -> None:
        self.state_dir = state_dir
        state = StateDir(state_dir)
        self.agent_pub = state.ensure_identity().public_key()
        self.console = protocol.generate_private_key()
        state.set_console_key(protocol.public_key_b64(self.console))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*AGENT, "serve", "--state-dir", str(state_dir), "--dataplane", "recording"]
            + ["--listen", f"127.0.0.1:{self.port}", "--resync-interval", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready"):
            self.proc.kill()
            raise AssertionError(f"serve did not start: {line!r} {self.proc.stderr.read()!r}")

    def call(self, method: str, path: str, body=None, timeout: float = 10) -> requests.Response:
        """A signed request; the answer's signature is checked."""
        data = json.dumps(body).encode() if body is not None else b""
        headers = protocol.sign_request(self.console, method, path, data)
        resp = requests.request(
            method,
            f"https://127.0.0.1:{self.port}{path}",
            data=data,
            headers=headers,
            verify=False,
            timeout=timeout,
        )
        protocol.verify_response(
            self.agent_pub,
            resp.status_code,
            resp.content,
            headers[protocol.HEADER_NONCE] if resp.status_code != 401 else "",
            resp.headers.get(protocol.HEADER_SIGNATURE),
        )
        return resp

    def tls(self, timeout: float = 10) -> ssl.SSLSocket:
        """A raw TLS connection to the agent (for malformed requests)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return ctx.wrap_socket(raw)

    def vm(self, field: str) -> int:
        """A /proc/PID/status memory figure (VmHWM, VmRSS) in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self) -> str:
        """SIGTERM, wait; returns what it logged."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err
