"""The native nftables renderer: golden output for every IR field, the conventions the nft
dataplane relies on, and `nft -c` (the kernel's own parser) on every rendered policy."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from compiler.ir import LOG, Chain, Program, Rule, Table
from compiler.render_nft import TABLE, _quote, render_nft
from tests.support.netns import namespace, needs_netns

from . import cases
from .nft_cases import every_field

GOLDEN = Path(__file__).with_name("golden") / "every_field.nft"
RULE = re.compile(r"^\t\t(?!type )(.+)$", re.M)
SET_LINES = ("flags ", "elements ", "auto-merge", "counter\n", "}")


def test_every_field_golden():
    """Byte-for-byte; regenerate with RPT_UPDATE_GOLDEN=1 after a deliberate change."""
    got = render_nft(every_field())
    if os.environ.get("RPT_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()


@pytest.mark.parametrize("case", sorted(cases.CASES))
def test_conventions(case):
    """One transaction recreating only our table; every rule counts and carries its tag."""
    script = render_nft(cases.compile_case(case).program)
    head = f"table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n"
    assert script.startswith(head)
    assert script.count("\ntable ") == 1  # no other table is named, let alone flushed
    rules = [r for r in RULE.findall(script) if not r.startswith(SET_LINES)]
    assert rules
    for rule in rules:
        assert re.search(r"(^| )counter ", rule) and re.search(r' comment "rpt:[^"]+"$', rule), rule


def test_until_is_tz_independent_epoch():
    script = render_nft(every_field())
    assert "meta time < 1893456030 " in script  # 2030-01-01T00:00:30Z


@pytest.mark.parametrize("case", [*sorted(cases.CASES), "every_field"])
@needs_netns[0]
@needs_netns[1]
def test_kernel_parses(case):
    """`nft -c -f` in an rpt_ namespace accepts the script, and loading it twice works
    (the delete of the first load's table is part of the second transaction)."""
    program = every_field() if case == "every_field" else cases.compile_case(case).program
    script = render_nft(program)
    with namespace("nftc") as ns:
        check = ns.run("nft", "-c", "-f", "-", input=script, check=False)
        assert check.returncode == 0, check.stderr
        for _ in range(2):
            ns.run("nft", "-f", "-", input=script)
        listed = ns.run("nft", "list", "table", "inet", TABLE).stdout
        assert listed.count("comment ") >= script.count(" comment ")


def _log_program(prefix: str) -> Program:
    table = Table(
        4, "filter", chains={"RPT-LOG": Chain("RPT-LOG", [Rule(LOG, "rpt:sys:log", arg=prefix)])}
    )
    return Program(device="log", tables={(4, "filter"): table}, sets={}, rules={})


@needs_netns[0]
@needs_netns[1]
def test_log_prefix_reaches_the_kernel_verbatim():
    """nft takes a quoted string verbatim (no escapes): a backslash the policy allows in a
    log prefix is written once, and the kernel holds exactly the policy's prefix."""
    prefix = "rpt\\x drop: "
    with namespace("nftq") as ns:
        ns.run("nft", "-f", "-", input=render_nft(_log_program(prefix)))
        listed = json.loads(ns.run("nft", "-j", "list", "table", "inet", TABLE).stdout)
    logs = [
        s["log"] for i in listed["nftables"] if "rule" in i for s in i["rule"]["expr"] if "log" in s
    ]
    assert logs == [{"prefix": prefix}]


@pytest.mark.parametrize("text", ['x" accept comment "y', "x\ny", "x $y"])
def test_unquotable_string_is_refused(text):
    """A quote or line break would end nft's string (it has no escapes), a `$` starts a
    variable: refused as the validator refuses them, never written into the script."""
    with pytest.raises(ValueError, match="log prefix cannot hold"):
        render_nft(_log_program(text))
    with pytest.raises(ValueError, match="no nft spelling"):
        _quote(text)
