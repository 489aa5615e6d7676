"""`rampart-agent enroll` over the standard library's HTTP client, against a stand-in
console endpoint (a stdlib HTTPS server answering as the console's enroll view does)."""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rampart_agent import cli, protocol
from rampart_agent.state import ENROLLMENT_FILE, StateDir

CONSOLE_KEY = protocol.public_key_b64(protocol.generate_private_key())


class Console(BaseHTTPRequestHandler):
    answer: tuple[int, bytes] = (201, b"")
    seen: list = []

    def do_POST(self):  # noqa: N802 - stdlib name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers["Content-Type"], json.loads(body)))
        status, data = self.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def console(tmp_path):
    """An HTTPS server with a self-signed certificate; yields its URL and handler class."""
    key = protocol.generate_private_key()
    (tmp_path / "cert.pem").write_bytes(protocol.make_self_signed_cert(key, "127.0.0.1"))
    (tmp_path / "key.pem").write_bytes(protocol.private_key_to_pem(key))
    handler = type("Handler", (Console,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def enroll(console_url, state_dir, *extra):
    return cli.main(
        [
            "enroll",
            "--console",
            console_url,
            "--token",
            "tok-1",
            "--state-dir",
            str(state_dir),
            "--dataplane",
            "recording",
            *extra,
        ]
    )


def test_enroll_posts_json_and_stores_the_console_key(console, tmp_path, capsys):
    url, handler = console
    answer = {"console_public_key": CONSOLE_KEY, "device": "web-1", "device_id": 7}
    handler.answer = (201, json.dumps(answer).encode())
    assert enroll(url + "/", tmp_path / "s", "--insecure", "--listen-port", "9000") == 0
    path, content_type, payload = handler.seen[0]
    assert path == protocol.ENROLL_PATH and content_type == "application/json"
    state = StateDir(tmp_path / "s")
    assert payload["token"] == "tok-1" and payload["listen_port"] == 9000
    assert payload["cert_fingerprint"] == state.cert_fingerprint()
    assert payload["public_key"] == protocol.public_key_b64(state.ensure_identity())
    assert "hostname" in payload["facts"]
    assert state.read_json(ENROLLMENT_FILE)["device_id"] == 7
    assert "enrolled as web-1" in capsys.readouterr().out


def test_enroll_verifies_the_console_certificate_unless_insecure(console, tmp_path, capsys):
    url, handler = console
    assert enroll(url, tmp_path / "s") == 1
    err = capsys.readouterr().err
    assert "cannot reach the console" in err and "CERTIFICATE_VERIFY_FAILED" in err
    assert handler.seen == []


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (400, b'{"token": ["invalid or expired"]}', "enrollment refused (400): {'token'"),
        (502, b"<html>bad gateway</html>", "enrollment refused (502): <html>bad gateway"),
        (201, b"not json", "the console's answer is not an enrollment"),
    ],
)
def test_enroll_refusals_are_one_readable_line(console, tmp_path, capsys, status, body, expected):
    url, handler = console
    handler.answer = (status, body)
    assert enroll(url, tmp_path / "s", "--insecure") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"rampart-agent: error: {expected}")


def test_enroll_to_nowhere_is_a_readable_error(tmp_path, capsys):
    assert enroll("http://127.0.0.1:9", tmp_path / "s") == 1
    assert "cannot reach the console at http://127.0.0.1:9" in capsys.readouterr().err
