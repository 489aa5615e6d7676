"""A minimal console for tests, run inside the client namespace (stdlib + cryptography).

  console_cli.py KEY_PEM AGENT_PUB_B64 URL METHOD PATH TIMEOUT < body
prints {"status", "body", "signed"} or {"error"} when the agent cannot be reached.
"""

import http.client
import json
import ssl
import sys
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from rampart_agent import protocol  # noqa: E402


def main() -> None:
    key_pem, agent_pub, url, method, path, timeout = sys.argv[1:7]
    key = protocol.load_private_key_pem(Path(key_pem).read_bytes())
    body = sys.stdin.buffer.read()
    headers = protocol.sign_request(key, method, path, body)
    parts = urlsplit(url)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(
        parts.hostname, parts.port, timeout=float(timeout), context=ctx
    )
    try:
        conn.request(
            method, path, body=body, headers={**headers, "Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        data = resp.read()
    except OSError as exc:
        print(json.dumps({"error": str(exc) or exc.__class__.__name__}))
        return
    try:
        protocol.verify_response(
            protocol.load_public_key_b64(agent_pub),
            resp.status,
            data,
            headers[protocol.HEADER_NONCE],
            resp.getheader(protocol.HEADER_SIGNATURE),
        )
        signed = True
    except protocol.SignatureError:
        signed = False
    print(json.dumps({"status": resp.status, "body": json.loads(data), "signed": signed}))


if __name__ == "__main__":
    main()
