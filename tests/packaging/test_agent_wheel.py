"""The agent's wheel on its own: built by `make agent-wheel`, installed into a clean venv
without Django, its command line, and `serve` answering over TLS in an rpt_ namespace.

The build and the install fetch setuptools and cryptography from the index pip is
configured with; where that index cannot be reached the tests skip and say so.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import rampart_agent
from rampart_agent import protocol
from rampart_agent.state import StateDir
from tests.support.netns import namespace, needs_root

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "tests" / "rampart_agent" / "console_cli.py"
pytestmark = pytest.mark.slow

# pip's words when the index (not the wheel) is the problem.
UNREACHABLE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ProxyError",
)

# An unsigned request from inside the namespace: stdlib only, so the venv's Python runs it.
UNSIGNED_GET = """
import http.client, json, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
conn = http.client.HTTPSConnection(sys.argv[1], int(sys.argv[2]), timeout=10, context=ctx)
conn.request("GET", "/v1/status")
tls = conn.sock.version()  # before the answer: the agent closes a refused request's connection
resp = conn.getresponse()
print(json.dumps({"status": resp.status, "tls": tls, "body": json.loads(resp.read())}))
"""


@dataclass
class Installed:
    wheel: Path
    venv: Path
    cwd: Path  # outside the repository, so `python -m` cannot find the source tree
    env: dict[str, str]

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120
        )


def _skip_if_unreachable(step: str, res: subprocess.CompletedProcess[str]) -> None:
    out = res.stdout + res.stderr
    if res.returncode != 0 and any(word in out for word in UNREACHABLE):
        pytest.skip(f"{step}: pip cannot reach its index ({out.strip().splitlines()[-1]})")
    assert res.returncode == 0, f"{step} failed:\n{out}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("agent-wheel")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")
    }
    build = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "agent-wheel", f"AGENT_DIST={base / 'dist'}"]
        + [f"PY={sys.executable}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    _skip_if_unreachable("make agent-wheel", build)
    wheels = sorted((base / "dist").glob("rampart_agent-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    inst = Installed(wheels[0], venv, base, env)
    _skip_if_unreachable(
        "pip install", inst.run(inst.bin("python"), "-m", "pip", "install", "-q", str(wheels[0]))
    )
    return inst


def test_wheel_holds_the_agent_the_contract_and_the_units_only(installed: Installed) -> None:
    version = rampart_agent.__version__
    assert installed.wheel.name == f"rampart_agent-{version}-py3-none-any.whl"
    with zipfile.ZipFile(installed.wheel) as whl:
        names = whl.namelist()
        meta = whl.read(f"rampart_agent-{version}.dist-info/METADATA").decode()
    tops = {n.split("/")[0] for n in names}
    assert tops == {
        "rampart_agent",
        "rampart_contract",
        f"rampart_agent-{version}.dist-info",
        f"rampart_agent-{version}.data",
    }
    data = {n for n in names if n.startswith(f"rampart_agent-{version}.data/")}
    assert {n.rsplit("/", 1)[1] for n in data} == {
        "rampart-agent.service",
        "rampart-agent-restore.service",
    }
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    required = [ln for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    console_pin = next(
        ln.strip().strip('",')
        for ln in (ROOT / "pyproject.toml").read_text().splitlines()
        if ln.strip().startswith('"cryptography==')
    )
    unconditional = [ln for ln in required if "extra ==" not in ln]
    assert unconditional == [f"Requires-Dist: {console_pin}"]


def test_clean_venv_runs_the_cli_without_django(installed: Installed) -> None:
    no_django = installed.run(installed.bin("python"), "-c", "import django")
    assert no_django.returncode != 0 and "No module named 'django'" in no_django.stderr
    where = installed.run(
        installed.bin("python"), "-c", "import rampart_agent; print(rampart_agent.__file__)"
    )
    assert where.stdout.strip().startswith(str(installed.venv)), where

    version = installed.run(installed.bin("rampart-agent"), "--version")
    assert version.returncode == 0, version.stderr
    assert rampart_agent.__version__ in version.stdout + version.stderr

    helped = installed.run(installed.bin("python"), "-m", "rampart_agent", "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("serve", "enroll", "restore", "status"):
        assert command in helped.stdout

    state = installed.cwd / "restore-state"
    restored = installed.run(
        installed.bin("rampart-agent"),
        "restore",
        "--state-dir",
        str(state),
        "--dataplane",
        "recording",
    )
    assert restored.returncode == 0, restored.stderr
    assert (state / "agent.key").stat().st_mode & 0o077 == 0


@pytest.mark.netns
@needs_root
def test_serve_from_the_venv_answers_over_tls_in_a_namespace(installed: Installed) -> None:
    state = installed.cwd / "serve-state"
    console_key = protocol.generate_private_key()
    key_file = installed.cwd / "console.pem"
    key_file.write_bytes(protocol.private_key_to_pem(console_key))
    StateDir(state).set_console_key(protocol.public_key_b64(console_key))
    addr, port = "198.18.251.1", 8745
    log = installed.cwd / "serve.log"
    with namespace("pkg") as ns, log.open("w") as err:
        ns.run("ip", "addr", "add", f"{addr}/32", "dev", "lo")
        proc = ns.popen(
            installed.bin("rampart-agent"),
            "serve",
            "--state-dir",
            str(state),
            "--listen",
            f"{addr}:{port}",
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=installed.cwd,
            env=installed.env,
        )
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("ready"):
            proc.kill()
            pytest.fail(f"serve did not start: {line!r} {log.read_text()[-2000:]}")

        unsigned = json.loads(
            ns.run(installed.bin("python"), "-c", UNSIGNED_GET, addr, str(port)).stdout
        )
        assert unsigned["status"] == 401 and unsigned["tls"] == "TLSv1.3", unsigned
        assert "signature" in unsigned["body"]["error"]

        agent_pub = protocol.public_key_b64(StateDir(state).ensure_identity())
        signed = json.loads(
            ns.run(
                sys.executable,
                str(CONSOLE),
                str(key_file),
                agent_pub,
                f"https://{addr}:{port}",
                "GET",
                protocol.PATH_STATUS,
                "10",
                input="",
            ).stdout
        )
        assert signed["status"] == 200 and signed["signed"], signed
        assert signed["body"]["agent_version"] == rampart_agent.__version__

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
