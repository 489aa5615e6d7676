"""A log prefix reaches the kernel exactly as the policy writes it, on every dataplane.

iptables-restore reads a backslash in a quoted argument as an escape (`"a\\b"` would load
as `ab`), nft's quoted strings have no escapes and read `$` as a variable, xt_LOG keeps 29
bytes: the validator (values.log_prefix_problem) refuses what some dataplane cannot carry,
and the renderers write everything else so that it loads unchanged. The kernel tests load
prefixes holding every printable ASCII character the validator admits (and UTF-8 up to 29
bytes) into iptables-legacy, iptables-nft and native nft and read them back.
"""

from __future__ import annotations

import json
import re

import pytest

from compiler import PolicyDocument, compile_device, with_nft
from compiler.errors import DocumentError
from compiler.ir import LOG, Chain, Program, Rule, Table
from compiler.render_iptables import render_rule
from compiler.render_nft import TABLE, render_nft
from compiler.values import LOG_PREFIX_MAX, parse_log_prefix
from tests.support.netns import namespace, needs_netns

from . import cases
from .kernel import DATAPLANES, NATIVE, TOOLS, load

# every printable ASCII character but the two nft cannot write (`"`, `$`), in prefixes of
# at most 29 bytes; backslashes in awkward places (doubled, last); UTF-8 of exactly 29 bytes
_ASCII = "".join(chr(c) for c in range(32, 127) if chr(c) not in '"$')
PREFIXES = [
    *(_ASCII[i : i + 25] for i in range(0, len(_ASCII), 25)),
    "a\\b",
    "\\\\x\\",
    "it's #1; {x} `y`: ",
    "é" * 14 + "a",
    "plain_prefix-1",
]
_SAVED_PREFIX = re.compile(r'--log-prefix ("(?:[^"\\]|\\.)*"|\S+)')


def _log_rule(prefix: str) -> Rule:
    return Rule(LOG, "rpt:sys:log", arg=prefix)


def _program(prefix: str) -> Program:
    table = Table(4, "filter", chains={"RPT-LOG": Chain("RPT-LOG", [_log_rule(prefix)])})
    return Program(device="log", tables={(4, "filter"): table}, sets={}, rules={})


def unsave(word: str) -> str:
    """A `--log-prefix` argument as iptables-save prints it, back to the kernel's bytes."""
    if not word.startswith('"'):
        return word
    return re.sub(r"\\(.)", r"\1", word[1:-1])


@pytest.mark.parametrize(
    ("prefix", "spelled"),
    [
        ("a\\b", '"a\\\\b"'),
        ("it's", '"it\\\'s"'),
        ("rpt:1234abcd ", '"rpt:1234abcd "'),
        ("plain_prefix-1", "plain_prefix-1"),
    ],
)
def test_iptables_spells_a_prefix_as_iptables_save_does(prefix, spelled):
    """Bare when plain, else quoted with `\\`, `"` and `'` escaped: what restore reads back
    as the prefix, and the very line iptables-save prints."""
    line = render_rule("RPT-LOG", _log_rule(prefix), 4)
    assert line.endswith(f"-j LOG --log-prefix {spelled}")
    assert unsave(spelled) == prefix


@pytest.mark.parametrize(
    ("prefix", "words"),
    [
        ("cost $5", "'$'"),
        ('say "hi"', "quotes"),
        ("a\tb", "control"),
        ("a\rb", "control"),
        ("a\x85b", "control"),  # C1 (NEL)
        ("é" * 15, f"{LOG_PREFIX_MAX} bytes"),  # 15 characters, 30 bytes
        ("x" * 30, f"{LOG_PREFIX_MAX} bytes"),
        ("\ud800", "Unicode"),
        ("", "empty"),  # iptables-restore: "Argument must have a minimum length of 1"
        ("a\u2028b", "line"),  # Unicode line and paragraph separators split lines as
        ("a\u2029b", "line"),  # NEL does (str.splitlines: the agent's recording dataplane)
    ],
)
def test_what_a_dataplane_cannot_carry_is_refused_everywhere(prefix, words):
    """The validator, the document and both renderers refuse the same prefixes with the
    same words: none is ever written as another prefix."""
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_log_prefix(prefix)
    with pytest.raises(ValueError, match=re.escape(words)):
        render_rule("RPT-LOG", _log_rule(prefix), 4)
    with pytest.raises(ValueError):
        render_nft(_program(prefix))
    doc = _document([prefix])
    with pytest.raises(DocumentError, match=r"rules\[0\]\.log_prefix"):
        PolicyDocument.from_dict(doc)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_what_the_validator_admits_every_renderer_writes(prefix):
    assert parse_log_prefix(prefix) == prefix
    assert unsave(_SAVED_PREFIX.findall(render_rule("RPT-LOG", _log_rule(prefix), 4))[0]) == prefix
    assert f'log prefix "{prefix}"' in render_nft(_program(prefix))


def _document(prefixes: list[str]) -> dict:
    """One logged tcp rule per prefix (its own port, so no two merge)."""
    rules = [
        {
            "chain": "input",
            "action": "accept",
            "protocol": "tcp",
            "dports": [str(7000 + i)],
            "log": True,
            "log_prefix": prefix,
        }
        for i, prefix in enumerate(prefixes)
    ]
    return {
        "version": 1,
        "rulesets": [{"name": "logs", "rules": rules}],
        "devices": [{"name": "srv", "rulesets": ["logs"]}],
    }


def _kernel_prefixes(ns, backend: str) -> tuple[list[str], list[str]]:
    """(the LOG prefixes the kernel holds, IPv4's then IPv6's; the saved LOG lines)."""
    if backend == NATIVE:  # one inet table: each family's chains in turn
        listed = json.loads(ns.run("nft", "-j", "list", "table", "inet", TABLE).stdout)
        exprs = [e for i in listed["nftables"] if "rule" in i for e in i["rule"]["expr"]]
        return [e["log"]["prefix"] for e in exprs if "log" in e], []
    saved = ns.run(TOOLS[backend][2]).stdout + ns.run(TOOLS[backend][3]).stdout
    lines = [line for line in saved.splitlines() if "-j LOG" in line]
    return [unsave(_SAVED_PREFIX.findall(line)[0]) for line in lines], lines


@needs_netns[0]
@needs_netns[1]
@pytest.mark.parametrize("backend", ["legacy", *DATAPLANES])
def test_the_kernel_holds_the_exact_prefix(backend):
    """Loaded and read back: the kernel's prefixes are the policy's, byte for byte, in both
    families; on iptables the saved LOG lines are the bundle's very lines."""
    bundle = compile_device(PolicyDocument.from_dict(_document(PREFIXES)), "srv", now=cases.NOW)
    with namespace("cplp") as ns:
        load(ns, with_nft(bundle) if backend == NATIVE else bundle, backend)
        held, lines = _kernel_prefixes(ns, backend)
    assert held == PREFIXES * 2
    if backend != NATIVE:
        text = bundle.iptables_v4 + bundle.iptables_v6
        assert lines == [line for line in text.splitlines() if "-j LOG" in line]
