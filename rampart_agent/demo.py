"""Demo agent for `make run`: an agent in network namespace rpt_demo, enrolled as `demo`.

    python -m rampart_agent.demo [--console http://127.0.0.1:8000] [--device demo]

Runs in the foreground until SIGTERM/Ctrl-C, then stops the agent and deletes the
namespace. Needs root and iproute2 (`command()` returns None otherwise). The namespace is
joined to the root namespace by a veth pair: root side 198.18.0.1/30 (`rpt_demo0`, the
console's address, the demo device's management source), namespace side 198.18.0.2/30 (the
demo device's address; the agent listens on 198.18.0.2:8745 and applies its rules inside
rpt_demo only — the root namespace's firewall is never touched). Enrollment runs from the
root namespace (it only needs to reach the console) with the facts read inside rpt_demo and
a one-time token from `manage.py enrollment_token DEVICE`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

NS = "rpt_demo"
VETH = "rpt_demo0"
HOST_ADDR = "198.18.0.1"
AGENT_ADDR = "198.18.0.2"
ROOT = Path(__file__).resolve().parents[1]


def command(python: str) -> list[str] | None:
    """The long-running demo process for `make run`, or None without root/iproute2 (or
    with RAMPART_DEMO_AGENT=0)."""
    if (
        os.geteuid() != 0
        or shutil.which("ip") is None
        or os.environ.get("RAMPART_DEMO_AGENT") == "0"
    ):
        return None
    listen = os.environ.get("RAMPART_LISTEN", "127.0.0.1:8000")
    return [python, "-m", "rampart_agent.demo", "--console", f"http://{listen}"]


def _sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


def _namespace_up() -> None:
    if NS in _sh("ip", "netns", "list").stdout.split():
        _sh("ip", "netns", "delete", NS)
        time.sleep(0.2)
    _sh("ip", "netns", "add", NS)
    _sh("ip", "link", "add", VETH, "type", "veth", "peer", "name", "eth0", "netns", NS)
    _sh("ip", "addr", "add", f"{HOST_ADDR}/30", "dev", VETH)
    _sh("ip", "link", "set", VETH, "up")
    for argv in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{AGENT_ADDR}/30", "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "route", "add", "default", "via", HOST_ADDR],
    ):
        _sh("ip", "netns", "exec", NS, *argv)


def _wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - our own console
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error answer: it is up
                return
            if time.monotonic() > deadline:
                _idle(f"console not reachable at {url} ({exc})")
            time.sleep(0.5)


def _idle(reason: str) -> None:
    """A broken demo must not stop `make run` (it stops everything when one process
    exits): remove the namespace, say why, and wait for the stop signal."""
    _sh("ip", "netns", "delete", NS, check=False)
    sys.stderr.write(f"demo agent disabled: {reason}\n")
    while True:
        signal.pause()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="demo agent in namespace rpt_demo")
    parser.add_argument("--console", default="http://127.0.0.1:8000")
    parser.add_argument("--device", default="demo")
    parser.add_argument("--token", help="enrollment token (default: made with manage.py)")
    parser.add_argument("--backend", default="nft", choices=["nft", "legacy"])
    var_dir = Path(os.environ.get("RAMPART_VAR_DIR", ROOT / "var"))  # beside the console's database
    parser.add_argument("--state-dir", default=str(var_dir / "agent-demo"))
    args = parser.parse_args(argv)
    python, state = sys.executable, Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    agent = ["env", f"PYTHONPATH={ROOT}", python, "-m", "rampart_agent.cli"]
    common = ["--state-dir", str(state), "--dataplane", args.backend]
    _namespace_up()
    child: subprocess.Popen | None = None

    def stop(*_: object) -> None:
        if child is not None and child.poll() is None:
            child.terminate()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        facts = _sh("ip", "netns", "exec", NS, *agent, "facts", *common).stdout
        (state / "facts.json").write_text(facts)
        _wait_for(args.console.rstrip("/") + "/", 60)
        token = (
            args.token
            or _sh(
                python, str(ROOT / "manage.py"), "enrollment_token", args.device, cwd=ROOT
            ).stdout.strip()
        )
        enrolled = _sh(
            *agent,
            "enroll",
            "--console",
            args.console,
            "--token",
            token,
            "--facts-file",
            str(state / "facts.json"),
            "--listen-port",
            "8745",
            *common,
            check=False,
        )
        sys.stderr.write(enrolled.stdout + enrolled.stderr)
        if enrolled.returncode != 0:
            _idle(f"enrollment failed: {enrolled.stderr.strip()}")
        child = subprocess.Popen(
            ["ip", "netns", "exec", NS, *agent, "serve", *common, "--listen", f"{AGENT_ADDR}:8745"]
        )
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait(timeout=10)
        _sh("ip", "netns", "delete", NS, check=False)


if __name__ == "__main__":
    sys.exit(main())
