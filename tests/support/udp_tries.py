"""A client script for rate-limit tests: one UDP datagram per try, each from a fresh socket
(a new conntrack entry, so the rule decides each one); prints a JSON list, True where the
server's echo came back. Run it in the client namespace with the tries as argv[1]:
`[[source, host, port], ...]`."""

from __future__ import annotations

import json
import sys

from tests.support.netns import Netns

SEND = """
import json, socket, sys
out = []
for source, host, port in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    s.settimeout(0.3)
    s.sendto(b"x", (host, port))
    try:
        out.append(bool(s.recv(16)))
    except OSError:
        out.append(False)
    s.close()
print(json.dumps(out))
"""


def echoed(client: Netns, tries: list[tuple[str, str, int]]) -> int:
    """How many of `tries` (sent from `client`, one after the other) came back."""
    return sum(json.loads(client.run(sys.executable, "-c", SEND, json.dumps(tries)).stdout))
