"""IptablesDataplane over a fake command runner: the exact commands, and parsing their output."""

import subprocess
import sys

import pytest

from rampart_agent.dataplane import DataplaneError, IptablesDataplane, detect_backend
from rampart_agent.runner import FakeRunner, Result, Runner
from tests.rampart_agent.test_dataplane_save import SAVE

IPSET = """Name: rpt-4-aaaa
Type: hash:net
Number of entries: 12

Name: docker-set
Type: hash:ip
Number of entries: 3
"""


def fake(outputs):
    def handler(argv, inp):
        for key, out in outputs.items():
            if " ".join(argv).startswith(key):
                return out if isinstance(out, Result) else Result(0, out)
        return Result(0, "")

    return FakeRunner(handler=handler)


def test_restore_command_and_refusal():
    runner = fake(
        {"iptables-nft-restore": Result(4, "", "line 6: RULE_APPEND failed (Too many links)")}
    )
    dp = IptablesDataplane("nft", runner)
    with pytest.raises(DataplaneError, match="Too many links"):
        dp.restore("v4", "*filter\nCOMMIT\n")
    runner = fake({})
    IptablesDataplane("legacy", runner, reader="save").restore("v6", "*filter\nCOMMIT\n")
    assert runner.calls == [
        (["ip6tables-legacy-restore", "--noflush", "--wait=60"], "*filter\nCOMMIT\n")
    ]


def test_read_jumps_reads_only_the_named_builtin_chain():
    runner = fake(
        {
            "iptables-nft -w 60 -t filter -S INPUT": "-P INPUT ACCEPT\n"
            "-A INPUT -p tcp -j ACCEPT\n-A INPUT -m comment --comment rpt:jump -j RPT-INPUT\n"
        }
    )
    jumps = IptablesDataplane("nft", runner).read_jumps("v4", "filter", ["INPUT"])
    assert [(j.position, j.target) for j in jumps["INPUT"]] == [(2, "RPT-INPUT")]
    assert len(runner.calls) == 1


def test_ipset_list_only_ours():
    dp = IptablesDataplane("nft", fake({"ipset list -t": IPSET}))
    assert dp.ipset_list() == {"rpt-4-aaaa": 12}


def test_other_backend_cleanup_goes_through_the_other_restore():
    runner = fake({"iptables-legacy-save": SAVE})
    found = IptablesDataplane("nft", runner).cleanup_other_backend()
    assert found == {"v4:filter": ["RPT-INPUT", "INPUT->RPT-INPUT"]}
    restores = [(argv, inp) for argv, inp in runner.calls if argv[0].endswith("-restore")]
    assert restores == [
        (
            ["iptables-legacy-restore", "--noflush", "--wait=60"],
            "*filter\n-D INPUT 1\n-F RPT-INPUT\n-X RPT-INPUT\nCOMMIT\n",
        )
    ]


def test_backend_detection_follows_the_other_users_rules():
    docker_on_legacy = fake(
        {"iptables-legacy-save": SAVE, "iptables -V": "iptables v1.8.9 (nf_tables)"}
    )
    assert detect_backend(docker_on_legacy) == "legacy"  # 2 foreign rules there, none in nft
    empty = fake({"iptables -V": "iptables v1.8.9 (nf_tables)"})
    assert detect_backend(empty) == "nft"
    assert detect_backend(fake({"iptables -V": "iptables v1.8.9 (legacy)"})) == "legacy"


PRELOAD_CHECK = """
import sys, threading
from rampart_agent.dataplane import IptablesDataplane
from rampart_agent.runner import FakeRunner
dp = IptablesDataplane("{backend}", FakeRunner())
dp.keep_tools_ready()
for thread in threading.enumerate():
    if thread.name == "iptc-preload":
        thread.join(30)
print("iptc" in sys.modules)
"""


@pytest.mark.parametrize(("backend", "loaded"), [("legacy", "True"), ("nft", "False")])
def test_a_serving_legacy_agent_imports_iptc_before_its_first_apply(backend, loaded):
    """The first apply of a legacy agent reads its built-in chains through python-iptables,
    whose import (~0.3-0.8 s) happens when the agent starts serving, not inside that apply;
    an iptables-nft agent never reads through it and never imports it."""
    pytest.importorskip("iptc")
    code = PRELOAD_CHECK.format(backend=backend)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == loaded


def test_a_fake_runner_answers_set_reads_and_no_kernel_is_asked():
    """read_sets asks the kernel over netlink only through a runner that says where its
    commands run (Runner.netns); a fake host's sets come from its `ipset save` answers."""
    saved = (
        "create rpt-4sp-a hash:net,port family inet hashsize 64 maxelem 65536 counters comment\n"
        'add rpt-4sp-a 198.18.0.0/24,tcp:80 packets 7 bytes 420 comment "rpt:u1:h"\n'
    )
    runner = fake({"ipset save rpt-4sp-a": saved, "ipset save": Result(1, "", "no set")})
    assert runner.netns() == (False, None)
    got = IptablesDataplane("legacy", runner).read_sets(
        ["rpt-4sp-a"], keys={"rpt-4sp-a": {"198.18.0.0/24,tcp:80": "u1"}}
    )
    assert [(e.value, e.packets) for e in got["rpt-4sp-a"].elements] == [
        ("198.18.0.0/24,tcp:80", 7)
    ]
    assert ["ipset", "save", "rpt-4sp-a"] in [argv for argv, _ in runner.calls]
    assert Runner().netns() == (True, None)
    assert Runner(["ip", "netns", "exec", "rpt_x"]).netns() == (True, "rpt_x")
    assert Runner(["nsenter", "-t", "1", "-n"]).netns() == (False, None)
