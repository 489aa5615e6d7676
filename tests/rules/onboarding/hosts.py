"""Real firewalls written by their own tools inside an `rpt_` namespace (never the root one).

Shared by the onboarding equivalence tests (test_onboarding_netns.py) and the differential
suite (test_differential_netns.py). Each tool's configuration and state live in a private
copy under the test's tmp_path:

- ufw 0.36: `ufw --rootdir=D --datadir=D ...` with D a private copy of /etc/ufw,
  /etc/default/ufw, /lib/ufw and /usr/share/ufw (its sysctl file emptied), then
  `ufw --force enable`, which runs ufw-init → iptables-restore in the namespace.
- firewalld 1.3: `firewall-offline-cmd --system-config D ...` writes the permanent zone
  config into D (what `firewall-cmd --permanent` does); then the real daemon,
  `firewalld --nofork --system-config D`, starts in the namespace on a private system bus:
  a tmpfs over /run (mounts made inside `ip netns exec` stay in its own mount namespace)
  holding the socket of a `dbus-daemon --config-file` of ours. Once `firewall-cmd --state`
  (over that bus) says running, the daemon and its bus are killed (-9, CleanupOnExit=no):
  the rules stay in the namespace's kernel. Either backend (iptables or nftables).
- shorewall 5.2: `shorewall compile D OUT` — run inside the namespace, because its
  capability probe creates (empty) tables wherever it runs — then `VARDIR=V OUT start`,
  the compiled script, applies it.
- Docker cannot run here, so its chains are written by hand (dumps.DOCKER_HOST) and loaded
  with ipset restore + iptables-restore.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.support.netns import Netns


def needs(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def private_ufw(tmp_path: Path) -> Path:
    root = tmp_path / "ufw"
    for src, dst in (
        ("/etc/ufw", "etc/ufw"),
        ("/lib/ufw", "lib/ufw"),
        ("/usr/share/ufw", "usr/share/ufw"),
    ):
        shutil.copytree(src, root / dst, symlinks=True)
    (root / "etc/default").mkdir(parents=True)
    defaults = Path("/etc/default/ufw").read_text()
    sysctl = root / "etc/ufw/sysctl.conf"
    sysctl.write_text("")  # ufw would otherwise set these kernel knobs
    (root / "etc/default/ufw").write_text(
        re.sub(r"(?m)^IPT_SYSCTL=.*$", f"IPT_SYSCTL={sysctl}", defaults)
    )
    return root


def ufw_host(server: Netns, tmp_path: Path, commands: Iterable[list[str]]) -> None:
    """Run each ufw command (then `--force enable`) against a private copy of ufw."""
    needs("ufw", "iptables-save")
    root = private_ufw(tmp_path)
    for args in [*commands, ["--force", "enable"]]:
        server.run("ufw", f"--rootdir={root}", f"--datadir={root}", *args)


_BUS = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"""
# in the namespace, in a mount namespace of its own (ip netns exec): private /run, a bus, the
# daemon; wait until it runs, then kill both (the rules stay)
_FIREWALLD_RUN = """\
set -e
mount -t tmpfs rpt-firewalld /run
mkdir -p /run/dbus
bus=$(dbus-daemon --config-file="$1/bus.conf" --fork --print-pid)
firewalld --nofork --nopid --system-config "$1" --log-target file --log-file "$1/log" &
fw=$!
trap 'kill -9 $fw $bus 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do
  [ "$(firewall-cmd --state 2>/dev/null)" = running ] && exit 0
  kill -0 $fw 2>/dev/null || { cat "$1/log" >&2; exit 1; }
  sleep 0.2
done
echo "firewalld did not start" >&2; exit 1
"""


def firewalld_host(
    server: Netns, tmp_path: Path, options: Iterable[str], backend: str = "iptables"
) -> None:
    """`firewall-offline-cmd` writes the zone `public` into a private config directory;
    the real firewalld daemon applies it in `server` with `backend` (iptables or nftables)."""
    needs("firewall-offline-cmd", "firewalld", "firewall-cmd", "dbus-daemon", "iptables-save")
    cfg = tmp_path / f"firewalld-{backend}"
    cfg.mkdir()
    conf = Path("/etc/firewalld/firewalld.conf").read_text()
    for key, value in (
        ("FirewallBackend", backend),
        ("IPv6_rpfilter", "no"),
        ("CleanupOnExit", "no"),
    ):
        conf = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", conf)
    (cfg / "firewalld.conf").write_text(conf)
    (cfg / "bus.conf").write_text(_BUS)
    for opt in options:
        server.run("firewall-offline-cmd", "--system-config", str(cfg), "--zone=public", opt)
    server.run("sh", "-c", _FIREWALLD_RUN, "firewalld", str(cfg), timeout=120)


def shorewall_host(
    server: Netns,
    tmp_path: Path,
    *,
    zones: str,
    interfaces: str,
    policy: str,
    rules: str,
    extra: dict[str, str] | None = None,
) -> None:
    """Compile a shorewall configuration (private CONFIG_PATH, log and VARDIR) in `server`
    and start the compiled script there."""
    needs("shorewall", "iptables-save")
    cfg, var = tmp_path / "shorewall", tmp_path / "var"
    cfg.mkdir()
    var.mkdir()
    conf = Path("/usr/share/shorewall/configfiles/shorewall.conf").read_text()
    for key, value in (
        ("CONFIG_PATH", f'"{cfg}:${{CONFDIR}}/shorewall:${{SHAREDIR}}/shorewall"'),
        ("LOGFILE", str(tmp_path / "log")),
        ("STARTUP_LOG", str(tmp_path / "startup.log")),
    ):
        conf = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", conf)
    (cfg / "shorewall.conf").write_text(conf)
    files = {"zones": zones, "interfaces": interfaces, "policy": policy, "rules": rules}
    for name, text in {**files, **(extra or {})}.items():
        (cfg / name).write_text(text)
    compiled = tmp_path / "firewall"
    server.run("shorewall", "compile", str(cfg), str(compiled), timeout=180)
    server.run("env", f"VARDIR={var}", str(compiled), "start", timeout=180)


def restore_host(server: Netns, dump: str, ipsets: str = "", dump6: str = "") -> None:
    """A hand-written host (a bastion, Docker's chains): ipset restore + iptables-restore."""
    needs("ipset", "iptables-restore", "ip6tables-restore", "iptables-save")
    if ipsets:
        server.run("ipset", "restore", input=ipsets)
    server.run("iptables-restore", input=dump)
    if dump6:
        server.run("ip6tables-restore", input=dump6)


# The hosts of both the equivalence tests and the differential suite


def ufw_commands(client4: str, dev: str) -> list[list[str]]:
    """The ufw host of the equivalence test and the differential suite."""
    return [
        ["allow", "22/tcp"],
        ["allow", "from", client4, "to", "any", "port", "8080", "proto", "tcp"],
        ["allow", "from", "198.19.0.0/16", "to", "any", "port", "9000", "proto", "tcp"],
        ["deny", "23"],
        ["limit", "2222/tcp"],
        ["reject", "25/tcp"],
        ["allow", "in", "on", dev, "to", "any", "port", "53", "proto", "udp"],
        ["allow", "in", "on", "eth9", "to", "any", "port", "5353", "proto", "udp"],
    ]


def firewalld_options(client4: str) -> list[str]:
    """The firewalld host of the equivalence test and the differential suite."""
    return [
        "--add-service=ssh",
        "--add-port=8080/tcp",
        "--add-port=5300-5310/udp",
        f"--add-rich-rule=rule family=ipv4 source address={client4} port "
        "port=9100 protocol=tcp accept",
        f"--add-rich-rule=rule family=ipv4 source address={client4} port "
        "port=7000 protocol=tcp reject",
        "--add-rich-rule=rule family=ipv4 source address=198.19.66.0/24 drop",
    ]


SHOREWALL_RULES = """\
?SECTION NEW
ACCEPT\tnet\t$FW\ttcp\t22
ACCEPT\tnet\t$FW\ttcp\t8080
ACCEPT\tnet:{client}\t$FW\ttcp\t9100
ACCEPT\tnet:198.19.0.0/16\t$FW\ttcp\t9200
REJECT\tnet\t$FW\ttcp\t25
DROP\tnet\t$FW\tudp\t5300:5310
ACCEPT\tnet\t$FW\tudp\t53
Ping(ACCEPT)\tnet\t$FW
"""
