"""The native nftables dataplane against a real kernel (rpt_ namespaces): what it reads
back from `table inet rampart` is what the bundle says, for every compiler test policy
(NAT and sets included) and a set-compiled one; the bundle's `nft` field is checked."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import CompileOptions, PolicyDocument, compile_device, with_nft
from compiler.ir import SHAPES
from compiler.render_nft import render_nft
from rampart_agent.bundle import Bundle, check_nft_script
from rampart_agent.dataplane import NftDataplane, open_dataplane
from rampart_agent.dataplane.nft import _first_live_key, _keys
from rampart_agent.drift import drift_diff, kernel_matches, read_kernel
from rampart_agent.protocol import bundle_hash
from rampart_agent.ruleset import BundleError
from rampart_agent.runner import Runner
from tests.compiler import cases
from tests.compiler.nft_cases import every_field
from tests.support.netns import namespace, needs_netns

ALL_TYPES = frozenset(kind for kind, _ in SHAPES.values())


def set_compiled():
    rules = [
        {
            "id": f"00000000-0000-4000-8000-0000000002{i:02d}",
            "chain": "input",
            "action": "drop" if i % 2 else "accept",
            "sources": [f"198.18.{i}.0/24"],
            "destinations": ["198.19.0.0/16"],
            "protocol": "tcp",
            "dports": [f"{1000 + 10 * i}-{1005 + 10 * i}"],
        }
        for i in range(12)
    ]
    doc = {
        "version": 1,
        "rulesets": [{"name": "blk", "rules": rules}],
        "devices": [{"name": "srv", "rulesets": ["blk"]}],
    }
    options = CompileOptions(set_compile=True, set_types=ALL_TYPES)
    return compile_device(PolicyDocument.from_dict(doc), "srv", options=options, now=cases.NOW)


def adjacent_nets():
    """A range as a set of adjacent CIDRs (198.18.4.10/31, 198.18.4.12/30, ...): each one
    element, as in the ipset (nft would merge them with auto-merge)."""
    doc = {
        "version": 1,
        "rulesets": [
            {
                "name": "r",
                "rules": [
                    {"chain": "input", "action": "accept", "sources": [net]}
                    for net in ("198.18.4.10-198.18.4.99", "2001:2::5-2001:2::40")
                ],
            }
        ],
        "devices": [{"name": "srv", "rulesets": ["r"]}],
    }
    options = CompileOptions(ipset_threshold=1)
    return compile_device(PolicyDocument.from_dict(doc), "srv", options=options, now=cases.NOW)


def compiled(case: str):
    if case == "adjacent_nets":
        return adjacent_nets()
    return set_compiled() if case == "set_compiled" else cases.compile_case(case)


@pytest.mark.parametrize("case", [*sorted(cases.CASES), "set_compiled", "adjacent_nets"])
@needs_netns[0]
@needs_netns[1]
def test_reads_back_as_the_bundle_says(case):
    bundle = with_nft(compiled(case))
    parsed = Bundle.parse(bundle.to_dict(rules=False))  # the hash covers the script
    if case == "set_compiled":
        assert bundle.program is not None and bundle.program.lookups
    with namespace("nftd") as ns:
        dp = NftDataplane(Runner(prefix=["ip", "netns", "exec", ns.name]))
        assert dp.read("v4") == {} and dp.ipset_list() == {}  # no table yet
        dp.load_script(parsed.nft)
        assert kernel_matches(dp, parsed)
        view = read_kernel(dp, parsed)
        assert drift_diff(view, parsed, set()) == ""
        assert not view.foreign
        dp.load_script(None)  # the empty script removes the table
        assert ns.run("nft", "list", "tables").stdout == ""


def test_nft_field_may_only_recreate_our_table():
    bundle = with_nft(cases.compile_case("minimal")).to_dict(rules=False)
    Bundle.parse(bundle)
    script = bundle["nft"]
    # nft ignores indentation: a `}` inside the block ends the table just as well, and an
    # include or define reaches outside it without a brace
    inside = script[: script.rindex("}")]
    evils = [
        script + "flush ruleset\n",
        script + "table ip filter {\n}\n",
        script + "delete table ip nat\n",
        inside + "\t}\n\tflush ruleset\n\ttable inet rampart {\n}\n",
        inside
        + '\tchain x { counter comment "a" ; } ; } ; delete table ip nat ; table inet rampart {\n}\n',
        inside + '\tinclude "/etc/nftables.conf"\n}\n',
        inside + "\tdefine x = 1\n}\n",
        inside + '\tchain x { counter comment "}" }\n}\n}\n',
        inside + '\tchain x { counter comment "\n}\n',
        script.replace("table inet rampart {", "table inet rampart {}\ntable ip filter {"),
    ]
    for evil in evils:
        raw = {**bundle, "nft": evil}
        raw["hash"] = bundle_hash(raw)
        with pytest.raises(BundleError, match="only recreate table inet rampart"):
            Bundle.parse(raw)


def _check_part_by_part(text: str) -> bool:
    """The check as first written (quoted strings split off, each part in turn): what the
    whole-text check must agree with."""
    head = "table inet rampart\ndelete table inet rampart\ntable inet rampart {\n"
    body = text[len(head) :]
    if not text.startswith(head) or body.count('"') % 2:
        return False
    unquoted = body.split('"')[::2]
    depth = 1
    for n, part in enumerate(unquoted):
        if re.search(r"\b(include|define|redefine|undefine)\b|[#$]", part):
            return False
        for brace in re.finditer(r"[{}]", part):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0 and (n != len(unquoted) - 1 or part[brace.end() :].strip()):
                return False
    return depth == 0


NFT_TOKENS = ["{", "}", '"', " ", "\n", "\t", "\x00", "\x1f", "a", "set x ", "}\n", "#", "$"]
NFT_TOKENS += ["include", "xinclude", "define ", "undefine", '"}"', '"{ #"', "\u00e9", "\ud800"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(NFT_TOKENS), max_size=14))
def test_whole_text_check_agrees_with_the_part_by_part_one(tokens):
    text = "table inet rampart\ndelete table inet rampart\ntable inet rampart {\n"
    text += "".join(tokens)
    try:
        check_nft_script(text)
        passed = True
    except BundleError:
        passed = False
    assert passed == _check_part_by_part(text)


def test_every_rendered_script_passes_the_check():
    """A brace or quote in a rendered string (a tag, a log prefix) is not mistaken for the
    table's end: the renderer's every field, sets and meters included."""
    check_nft_script(render_nft(every_field()))
    check_nft_script(with_nft(set_compiled()).nft)


def test_bundles_without_the_script_hash_as_before():
    plain = cases.compile_case("example")
    assert "nft" not in plain.to_dict() and plain.nft == ""
    assert with_nft(plain).hash != plain.hash
    assert Bundle.parse(plain.to_dict(rules=False)).nft is None


def test_selected_by_name():
    assert isinstance(open_dataplane("nft-native"), NftDataplane)
    assert NftDataplane().facts()["backend"] == "nft-native"


class CountingRunner(Runner):
    """The real runner (in a namespace), counting the table listings it runs."""

    listings = 0

    def run(self, argv, input=None, check=True):  # noqa: ANN001, ANN201 - Runner's
        if argv[:4] == ["nft", "-j", "list", "table"]:
            self.listings += 1
        return super().run(argv, input=input, check=check)


@needs_netns[0]
@needs_netns[1]
def test_one_listing_answers_a_status_read():
    bundle = Bundle.parse(with_nft(set_compiled()).to_dict(rules=False))
    now = [100.0]
    with namespace("nfts") as ns:
        runner = CountingRunner(prefix=["ip", "netns", "exec", ns.name])
        dp = NftDataplane(runner, clock=lambda: now[0])
        dp.load_script(bundle.nft)
        read_kernel(dp, bundle)  # v4, v6, the sets, their elements
        assert runner.listings == 1
        now[0] += 10  # older than the snapshot's lifetime: listed again
        assert kernel_matches(dp, bundle) and runner.listings == 2
        dp.load_script(bundle.nft)  # a load drops the snapshot
        dp.read("v4")
        assert runner.listings == 3


@needs_netns[0]
@needs_netns[1]
def test_element_update_reads_only_the_elements_it_deletes():
    """A one-rule removal reads the counts of that rule's elements from a listing of its
    set alone, not of the table (seconds at 50k elements); an element gone by hand has
    nothing to count."""
    v1 = with_nft(set_compiled()).to_dict(rules=False)
    script = Bundle.parse(v1).nft
    assert script is not None
    gone = next(line for line in script.split("\n") if line.startswith("\t\t\t"))
    key = gone.strip().rstrip(",").split(" counter ", 1)[0]
    uuid = gone.split('comment "rpt:', 1)[1].split(":", 1)[0]
    name = next(
        line.split()[1]
        for line in script[: script.index(gone)].split("\n")[::-1]
        if line.startswith("\tset ")
    )
    v2 = script.replace(gone + "\n", "")
    with namespace("nftg") as ns:
        runner = CountingRunner(prefix=["ip", "netns", "exec", ns.name])
        dp = NftDataplane(runner)
        dp.load_script(script)
        # give the element counts: delete it and add it back with a counter
        comment = gone.split("comment ", 1)[1].rstrip(",")
        element = f"{key} counter packets 7 bytes 700 comment {comment}"
        ns.run("nft", "delete", "element", "inet", "rampart", name, f"{{ {key} }}")
        ns.run("nft", "add", "element", "inet", "rampart", name, f"{{ {element} }}")
        lost: dict[str, list[int]] = {}
        assert dp.update_elements(script, v2, lambda: None, lost)
        assert lost == {uuid: [7, 700]} and runner.listings == 0
        dp.load_script(script)  # the element is back (counts 0); then gone by hand
        ns.run("nft", "delete", "element", "inet", "rampart", name, f"{{ {key} }}")
        assert dp._element_counts(name, [key]) == {} and runner.listings == 0


def test_first_live_key_is_the_first_kernel_element():
    """The counts read names an element by its first kernel element, as `_keys` spells
    it, without spelling out every port of a range."""
    values = [
        {"concat": [{"prefix": {"addr": "198.18.0.0", "len": 24}}, "tcp", {"range": [80, 90]}]},
        {"concat": ["198.18.0.5", "udp", 53, {"prefix": {"addr": "0.0.0.0", "len": 0}}]},
        {"prefix": {"addr": "2001:2::", "len": 48}},
        "198.18.1.1",
    ]
    for val in values:
        assert _first_live_key(val) == _keys(val)[0]
