"""Parsing and payload planning (pure)."""

import pytest

from rampart_agent.ruleset import (
    FILL_SPLIT_FROM,
    BundleError,
    LiveJump,
    Table,
    ipset_fill_payload,
    ipset_fill_payloads,
    ipset_refill_payload,
    parse_ipsets,
    parse_restore,
    plan_table,
    rule_comment,
)

TEXT = """*filter
:INPUT ACCEPT [0:0]
:RPT-INPUT - [0:0]
:RPT-WEB - [0:0]
-A INPUT -m comment --comment rpt:jump -j RPT-INPUT
-A RPT-INPUT -j RPT-WEB
-A RPT-INPUT -m comment --comment "rpt:sys:default" -j DROP
-A RPT-WEB -p tcp --dport 443 -m comment --comment "rpt:aaa:11111111" -j ACCEPT
COMMIT
"""


def test_parse_restore_splits_chains_and_jumps():
    tables = parse_restore(TEXT)
    t = tables["filter"]
    assert list(t.chains) == ["RPT-INPUT", "RPT-WEB"]
    assert t.chains["RPT-INPUT"][0] == "-A RPT-INPUT -j RPT-WEB"
    assert t.jumps == {"INPUT": ["-A INPUT -m comment --comment rpt:jump -j RPT-INPUT"]}


def _parse_line_by_line(text: str) -> dict[str, dict[str, list[str]]]:
    """The meaning of a restore text, the slow obvious way (oracle for the run parser)."""
    out: dict[str, dict[str, list[str]]] = {}
    table = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = out.setdefault(line[1:], {})
        elif line.startswith(":") and line[1:].startswith("RPT-"):
            table.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A RPT-"):
            table[line.split()[1]].append(line)
    return out


def test_parse_restore_runs_equal_line_by_line_reading():
    """Interleaved chains, blank and comment lines, CRLF and trailing blanks: the chains
    come out as a line-by-line reading gives them, line numbers still count every line."""
    text = (
        "*filter\r\n:RPT-A - [0:0]\n:RPT-B - [0:0]\n"
        "-A RPT-A -s 198.18.0.1/32 -j ACCEPT\n-A RPT-A -s 198.18.0.2/32 -j DROP  \n"
        "-A RPT-B -p tcp --dport 22 -j ACCEPT\n\n# a comment\n"
        "-A RPT-A -p udp -j REJECT\r\n-A RPT-AB -j ACCEPT\nCOMMIT\n"
    )
    with pytest.raises(BundleError, match="line 10: chain RPT-AB is not declared"):
        parse_restore(text)
    text = text.replace("-A RPT-AB -j ACCEPT\n", "")
    parsed = {t: dict(v.chains) for t, v in parse_restore(text).items()}
    assert parsed == _parse_line_by_line(text)
    assert parsed["filter"]["RPT-A"][1] == "-A RPT-A -s 198.18.0.2/32 -j DROP"
    assert parse_restore(text.rstrip("\n"))["filter"].chains == parse_restore(text)["filter"].chains


def test_parse_restore_lends_unchanged_chains_from_the_previous_bundle():
    """Same result as a fresh parse; chains whose run of lines is the same text share the
    previous bundle's list, and the previous bundle is never changed (a chain now in two
    pieces gets a list of its own)."""
    old_text = (
        "*filter\n:RPT-A - [0:0]\n:RPT-B - [0:0]\n-A RPT-A -j ACCEPT\n"
        "-A RPT-B -j DROP\n-A RPT-B -j REJECT\nCOMMIT\n"
    )
    old = parse_restore(old_text)
    snapshot = {n: list(v) for n, v in old["filter"].chains.items()}
    new_text = old_text.replace("-A RPT-B -j REJECT", "-A RPT-B -j ACCEPT")
    new = parse_restore(new_text, previous=old)
    assert new["filter"].chains == parse_restore(new_text)["filter"].chains
    assert new["filter"].chains["RPT-A"] is old["filter"].chains["RPT-A"]
    assert new["filter"].chains["RPT-B"] is not old["filter"].chains["RPT-B"]
    pieces = old_text.replace("-A RPT-B -j DROP\n", "").replace(
        "COMMIT", "-A RPT-A -j DROP\nCOMMIT"
    )  # RPT-A: its old run, then one more line
    again = parse_restore(pieces, previous=old)
    assert again["filter"].chains["RPT-A"] == ["-A RPT-A -j ACCEPT", "-A RPT-A -j DROP"]
    assert {n: list(v) for n, v in old["filter"].chains.items()} == snapshot


@pytest.mark.parametrize(
    "text",
    [
        "*filter\n:DOCKER - [0:0]\nCOMMIT\n",  # not ours
        "*filter\n:RPT-A - [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n",  # builtin rule not a jump
        "*filter\n-A RPT-A -j ACCEPT\nCOMMIT\n",  # undeclared
        "*filter\n:RPT-A - [0:0]\n-I RPT-A 1 -j ACCEPT\nCOMMIT\n",  # only -A
        "*filter\n:RPT-A - [0:0]\n",  # no COMMIT
        "*filter\n-A INPUT -j RPT-B\nCOMMIT\n",  # jump to undeclared chain
        "*filter\n:RPT-" + "X" * 30 + " - [0:0]\nCOMMIT\n",  # too long
        "*bogus\nCOMMIT\n",
    ],
)
def test_parse_restore_rejects_outside_conventions(text):
    with pytest.raises(BundleError):
        parse_restore(text)


def test_rule_comment_forms():
    assert rule_comment('-m comment --comment "rpt:a b:1" -j X') == "rpt:a b:1"
    assert rule_comment("-m comment --comment rpt:jump -j X") == "rpt:jump"
    assert rule_comment("-j ACCEPT") is None


def test_parse_ipsets_and_fill_payload():
    sets = parse_ipsets(
        "create rpt-4-aa hash:net family inet hashsize 1024 maxelem 65536\n"
        "add rpt-4-aa 198.18.0.0/24\n"
    )
    assert list(sets) == ["rpt-4-aa"] and sets["rpt-4-aa"].entries == 1
    assert ipset_fill_payload(sets["rpt-4-aa"]).splitlines() == [
        "create rpt-4-aa hash:net family inet hashsize 1024 maxelem 65536",
        "add rpt-4-aa 198.18.0.0/24",
    ]
    refill = ipset_refill_payload(sets["rpt-4-aa"]).splitlines()
    tmp = refill[0].split()[1]
    assert tmp.startswith("rpt-tmp-") and refill[1] == f"add {tmp} 198.18.0.0/24"
    assert refill[2:] == [f"swap {tmp} rpt-4-aa", f"destroy {tmp}"]
    with pytest.raises(BundleError):
        parse_ipsets("create docker-set hash:net\n")
    with pytest.raises(BundleError):
        parse_ipsets("add rpt-4-bb 198.18.0.1\n")
    with pytest.raises(BundleError):  # an add of another set in the middle of a block
        parse_ipsets("create rpt-4-aa hash:net\nadd rpt-4-bb 198.18.0.1\n")


def _table(chains, jumps=None):
    return Table(
        "filter",
        {k: [f"-A {k} {r}" for r in v] for k, v in chains.items()},
        {
            b: [f"-A {b} -m comment --comment rpt:jump -j {t}" for t in ts]
            for b, ts in (jumps or {}).items()
        },
    )


def test_plan_first_apply_declares_fills_and_inserts_jump():
    new = _table({"RPT-INPUT": ["-j ACCEPT"]}, {"INPUT": ["RPT-INPUT"]})
    lines = plan_table("filter", None, new, {})
    assert lines == [
        "*filter",
        ":RPT-INPUT - [0:0]",
        "-A RPT-INPUT -j ACCEPT",
        "-I INPUT 1 -m comment --comment rpt:jump -j RPT-INPUT",
        "COMMIT",
    ]


def test_plan_unchanged_is_empty_and_jump_not_duplicated():
    t = _table({"RPT-INPUT": ["-j ACCEPT"]}, {"INPUT": ["RPT-INPUT"]})
    assert plan_table("filter", t, t, {"INPUT": [LiveJump(1, "RPT-INPUT")]}) == []


def test_plan_jump_moved_back_to_top_and_duplicates_removed():
    t = _table({"RPT-INPUT": ["-j ACCEPT"]}, {"INPUT": ["RPT-INPUT"]})
    lines = plan_table(
        "filter", t, t, {"INPUT": [LiveJump(2, "RPT-INPUT"), LiveJump(5, "RPT-INPUT")]}
    )
    assert lines[1:-1] == [
        "-D INPUT 5",
        "-D INPUT 2",
        "-I INPUT 1 -m comment --comment rpt:jump -j RPT-INPUT",
    ]


def test_plan_only_changed_chain_touched_and_small_change_is_in_place():
    rules = [f"-s 198.18.0.{i} -j ACCEPT" for i in range(1, 40)]
    old = _table({"RPT-A": rules, "RPT-B": ["-j DROP"]})
    changed = rules[:10] + ["-s 198.18.1.1 -j DROP"] + rules[11:]
    new = _table({"RPT-A": changed, "RPT-B": ["-j DROP"]})
    lines = plan_table("filter", old, new, {})
    assert lines == [
        "*filter",
        "-D RPT-A -s 198.18.0.11 -j ACCEPT",
        "-I RPT-A 11 -s 198.18.1.1 -j DROP",
        "COMMIT",
    ]


def test_plan_rewrites_a_chain_none_of_whose_rules_stays():
    """Nothing keeps its place (or counters): a flush and the new rules, not a delete of
    each old rule by its text (the common case: a 1-rule chain pointed at a new set)."""
    old = _table({"RPT-A": ["-m set --match-set rpt-4-old src -j DROP"]})
    new = _table({"RPT-A": ["-m set --match-set rpt-4-new src -j DROP"]})
    assert plan_table("filter", old, new, {}) == [
        "*filter",
        ":RPT-A - [0:0]",
        "-A RPT-A -m set --match-set rpt-4-new src -j DROP",
        "COMMIT",
    ]


def test_plan_big_change_rewrites_and_removed_chain_deleted_last():
    many = [f"-s 198.18.0.{i} -j ACCEPT" for i in range(1, 20)]
    old = _table({"RPT-A": ["-j RPT-OLD", *many], "RPT-OLD": ["-j DROP"]}, {"INPUT": ["RPT-A"]})
    new = _table({"RPT-A": [r.replace("ACCEPT", "DROP") for r in many]}, {"INPUT": ["RPT-A"]})
    lines = plan_table("filter", old, new, {"INPUT": [LiveJump(1, "RPT-A")]})
    assert lines[:3] == ["*filter", ":RPT-A - [0:0]", "-A RPT-A -s 198.18.0.1 -j DROP"]
    assert len(lines) == 2 + 19 + 3
    assert lines[-3:] == ["-F RPT-OLD", "-X RPT-OLD", "COMMIT"]


def test_plan_full_removes_every_live_chain_not_wanted():
    lines = plan_table(
        "filter",
        None,
        Table("filter"),
        {"INPUT": [LiveJump(3, "RPT-X")]},
        full=True,
        live_chains={"RPT-X", "RPT-Y"},
    )
    assert lines == [
        "*filter",
        "-D INPUT 3",
        "-F RPT-X",
        "-F RPT-Y",
        "-X RPT-X",
        "-X RPT-Y",
        "COMMIT",
    ]


def test_fill_payload_sizes_a_set_the_bundle_did_not_size():
    adds = [f"add rpt-4-big 198.{18 + i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(70000)]
    block = parse_ipsets("create rpt-4-big hash:net family inet\n" + "\n".join(adds))["rpt-4-big"]
    create = ipset_fill_payload(block).splitlines()[0].split()
    assert int(create[create.index("maxelem") + 1]) >= 70000
    assert int(create[create.index("hashsize") + 1]) >= 65536


def test_fill_payloads_split_big_sets_at_line_ends_and_join_small_ones():
    big = "".join(f"add rpt-4-big 198.18.{i // 250}.{i % 250}\n" for i in range(25_000))
    sets = parse_ipsets(
        "create rpt-4-big hash:net family inet\n"
        + big
        + "create rpt-4-s1 hash:net family inet\nadd rpt-4-s1 198.19.0.1\n"
        + "create rpt-4-s2 hash:net family inet\nadd rpt-4-s2 198.19.0.2\n"
    )
    payloads = ipset_fill_payloads(list(sets.values()), 3)
    assert len(payloads) == 4  # the small sets together, the big one in three pieces
    assert payloads[0].count("create ") == 2 and "add rpt-4-s2 198.19.0.2\n" in payloads[0]
    pieces = payloads[1:]
    assert all(
        p.startswith("create rpt-4-big hash:net family inet maxelem 65536 hashsize")
        and p.endswith("\n")
        for p in pieces
    )
    adds = [line for p in pieces for line in p.splitlines() if line.startswith("add ")]
    assert adds == big.splitlines()  # every entry once, in order
    assert ipset_fill_payloads(list(sets.values()), 1) == [
        "".join(ipset_fill_payload(b) for b in sets.values())
    ]


def test_fill_payloads_deal_many_small_sets_into_inputs_of_about_the_same_size():
    """Sets below FILL_SPLIT_FROM that hold that many entries between them (a set-compiled
    policy's lookup sets) are filled by `parts` processes at once, each set whole in one."""
    sizes = [3000, 2500, 2500, 2000, 2000, 1500, 1500, 1500, 1000, 1000, 800, 700, 500, 300, 200]
    assert sum(sizes) >= FILL_SPLIT_FROM > max(sizes)
    text = "".join(
        f"create rpt-4-s{k} hash:net family inet\n"
        + "".join(
            f"add rpt-4-s{k} 198.{18 + k // 8}.{k % 8 * 32 + i // 250}.{i % 250}\n"
            for i in range(n)
        )
        for k, n in enumerate(sizes)
    )
    sets = parse_ipsets(text)
    payloads = ipset_fill_payloads(list(sets.values()), 2)
    assert len(payloads) == 2
    creates = [
        [ln.split()[1] for ln in p.splitlines() if ln.startswith("create ")] for p in payloads
    ]
    assert sorted(creates[0] + creates[1]) == sorted(sets)  # every set once
    for names in creates:  # in each input, the sets in the bundle's order
        assert names == sorted(names, key=list(sets).index)
    for p in payloads:  # each set whole: its create line, then all its adds
        for name in sets:
            if f"create {name} " in p:
                assert ipset_fill_payload(sets[name]) in p
    entries = [p.count("\nadd ") for p in payloads]
    assert abs(entries[0] - entries[1]) <= max(sizes) // 2
