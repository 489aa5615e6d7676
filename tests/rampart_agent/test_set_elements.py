"""Set-compiled blocks without a kernel: element spelling, element diffs, drift lines, the
transition's plan (the real kernel: test_set_elements_netns.py)."""

from rampart_agent.bundle import Bundle
from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.dataplane.base import LiveElement, LiveSet
from rampart_agent.dataplane.save import parse_ipset_save
from rampart_agent.ruleset import parse_ipsets
from rampart_agent.set_elements import (
    element_keys,
    plan_repair,
    plan_update,
    rollback_sets,
    set_drift,
)
from rampart_agent.transition import transition
from rampart_contract.bundle_hash import SETS_BUNDLE_FORMAT, bundle_hash

A, B, C = (f"rpt:0000000{c}-aaaa-4000-8000-000000000000:0000000{c}" for c in "abc")
CREATE = "create rpt-4sp-0123456789abcdef hash:net,port family inet counters comment"
NAME = "rpt-4sp-0123456789abcdef"


def block(*adds: str):
    text = CREATE + "\n" + "".join(f"add {NAME} {a}\n" for a in adds)
    return parse_ipsets(text)[NAME]


def test_element_keys_spell_values_as_ipset_save_lists_them():
    assert element_keys("198.18.1.0/24,tcp:80") == ["198.18.1.0/24,tcp:80"]
    assert element_keys("198.18.1.1/32,udp:53-55") == [
        "198.18.1.1,udp:53",
        "198.18.1.1,udp:54",
        "198.18.1.1,udp:55",
    ]
    assert element_keys("2001:2::1/128,tcp:1") == ["2001:2::1,tcp:1"]
    assert element_keys("2001:2::/32,tcp:1") == ["2001:2::/32,tcp:1"]  # a v6 /32 stays
    assert element_keys("198.18.5.5,tcp:443,198.18.0.0/16") == ["198.18.5.5,tcp:443,198.18.0.0/16"]


def test_a_port_range_counts_one_entry_per_port_and_uuid_comments_are_not_ranges():
    b = block(f'198.18.1.0/24,tcp:1000-1002 comment "{A}"', f'198.18.2.0/24,udp:9 comment "{B}"')
    assert b.entries == 4


def test_plan_update_adds_first_deletes_what_no_line_keeps_and_resets_moved_elements():
    old = block(
        f'198.18.1.0/24,tcp:1000-1002 comment "{A}"',
        f'198.18.2.0/24,tcp:80 comment "{B}"',
        f'198.18.3.0/24,tcp:80 comment "{C}"',
    )
    new = block(
        f'198.18.1.0/24,tcp:1000-1001 comment "{A}"',  # narrowed: 1002 goes, 1000-1001 stay
        f'198.18.2.0/24,tcp:80 comment "{C}"',  # now C's element
        f'198.18.4.0/24,tcp:80 comment "{C}"',  # new
    )
    update = plan_update(old, new)
    assert update.adds == [
        f'add {NAME} 198.18.2.0/24,tcp:80 packets 0 bytes 0 comment "{C}"',
        f'add {NAME} 198.18.4.0/24,tcp:80 comment "{C}"',
    ]
    assert sorted(update.dels) == [
        f"del {NAME} 198.18.1.0/24,tcp:1002",
        f"del {NAME} 198.18.3.0/24,tcp:80",
    ]
    assert update.payload().index("add ") < update.payload().index("del ")
    uuid = {t: t.split(":")[1] for t in (A, B, C)}
    assert update.losing == {
        "198.18.1.0/24,tcp:1002": uuid[A],
        "198.18.2.0/24,tcp:80": uuid[B],
        "198.18.3.0/24,tcp:80": uuid[C],
    }


def test_repair_and_drift_compare_the_kernel_element_by_element():
    want = block(f'198.18.1.1/32,udp:9001 comment "{A}"', f'198.18.1.1/32,udp:9002 comment "{B}"')
    live = LiveSet(
        CREATE,
        [
            LiveElement("198.18.1.1,udp:9001", A, 7, 700),
            LiveElement("198.18.1.1,udp:7777", "by-hand", 2, 20),
        ],
    )
    lines = set_drift(want, live)
    assert lines == [
        f"+set {NAME} element 198.18.1.1,udp:7777  [comment by-hand, not in the bundle]",
        f"-set {NAME} element 198.18.1.1,udp:9002  [rule {B}]",
    ]
    update, lost = plan_repair(want, live)
    assert update.adds == [f'add {NAME} 198.18.1.1,udp:9002 comment "{B}"']
    assert update.dels == [f"del {NAME} 198.18.1.1,udp:7777"]
    assert lost == {}  # A's element stays, with its 7 packets; the foreign one counted nobody's
    assert set_drift(want, LiveSet(CREATE, [LiveElement(k, c) for k, c in _keys(want)])) == []


def _keys(b):
    return [
        (element_keys(line.split()[2])[0], line.split('"')[1])
        for line in b.adds.splitlines()
        if line
    ]


def test_ipset_save_parses_counters_and_comments_of_our_sets_only():
    text = (
        f"{CREATE} hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n"
        f'add {NAME} 198.18.0.0/24,tcp:80 packets 5 bytes 100 comment "{A}"\n'
        "create other hash:net family inet\nadd other 198.18.9.9\n"
    )
    sets = parse_ipset_save(text)
    assert list(sets) == [NAME]
    assert sets[NAME].elements == [LiveElement("198.18.0.0/24,tcp:80", A, 5, 100)]


def test_a_keyed_ipset_save_read_keeps_only_the_elements_asked_for():
    text = (
        f"{CREATE} hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n"
        f'add {NAME} 198.18.0.1,tcp:80 packets 5 bytes 100 comment "{A}"\n'
        f'add {NAME} 198.18.0.10,tcp:80 packets 6 bytes 110 comment "{B}"\n'
        f'add {NAME} 198.18.0.1,tcp:8080 packets 7 bytes 120 comment "{C}"\n'
        "create rpt-other hash:net family inet\nadd rpt-other 198.18.9.9\n"
    )
    full = parse_ipset_save(text)
    # a key that is a prefix of another element's is not that element
    keyed = parse_ipset_save(text, keys={NAME: ["198.18.0.1,tcp:80", "198.18.7.7,tcp:1"]})
    assert keyed[NAME].create == full[NAME].create
    assert keyed[NAME].elements == [LiveElement("198.18.0.1,tcp:80", A, 5, 100)]
    assert keyed["rpt-other"] == full["rpt-other"]  # a set without keys: every element
    assert parse_ipset_save(text, [NAME], {NAME: ["198.18.0.1,tcp:8080"]}) == {
        NAME: LiveSet(full[NAME].create, [LiveElement("198.18.0.1,tcp:8080", C, 7, 120)])
    }


def raw(adds: list[str], rule_target: str = "ACCEPT") -> dict:
    ipsets = CREATE + "\n" + "".join(f"add {NAME} {a}\n" for a in adds)
    v4 = (
        "*filter\n:RPT-INPUT - [0:0]\n"
        '-A INPUT -m comment --comment "rpt:jump" -j RPT-INPUT\n'
        f"-A RPT-INPUT -m set --match-set {NAME} src,dst "
        f'-m comment --comment "rpt:sys:set:{NAME}" -j {rule_target}\nCOMMIT\n'
    )
    return {"iptables_v4": v4, "iptables_v6": "", "ipsets": ipsets, "sets": {}}


def test_a_change_inside_a_block_is_one_element_batch_and_no_table_write():
    dp = RecordingDataplane()
    v1 = _bundle(
        raw([f'198.18.1.0/24,tcp:80 comment "{A}"', f'198.18.2.0/24,tcp:80 comment "{B}"'])
    )
    v2 = _bundle(
        raw([f'198.18.1.0/24,tcp:80 comment "{A}"', f'198.18.3.0/24,tcp:80 comment "{C}"'])
    )
    transition(dp, Bundle.empty(), v1, full=False, keep_sets=set())
    dp.payloads.clear()
    lost: dict = {}
    transition(dp, v1, v2, full=False, keep_sets=set(), lost=lost)
    assert [kind for kind, _ in dp.payloads] == ["ipset"]  # no iptables payload at all
    assert dp.payloads[0][1] == (
        f'add {NAME} 198.18.3.0/24,tcp:80 comment "{C}"\ndel {NAME} 198.18.2.0/24,tcp:80\n'
    )
    assert dp.ipset_list() == {NAME: 2}
    assert rollback_sets(v2.sets) == set()  # lookup sets are not kept for a rollback


def _bundle(data: dict) -> Bundle:
    data = {"format": SETS_BUNDLE_FORMAT, "device": "d", "chains": {}, **data}
    data["hash"] = bundle_hash(data)
    return Bundle.parse(data)


def test_a_rollback_puts_the_elements_back_and_recreates_a_dropped_lookup_set(env):
    engine, dp, _clock, _probes = env
    other = NAME.replace("0123", "9999")
    v1 = raw([f'198.18.1.0/24,tcp:80 comment "{A}"', f'198.18.2.0/24,tcp:80 comment "{B}"'])
    v1["ipsets"] += (
        f'{CREATE.replace(NAME, other)}\nadd {other} 198.18.7.0/24,tcp:7 comment "{C}"\n'
    )
    v1["iptables_v4"] = v1["iptables_v4"].replace(
        "COMMIT", f"-A RPT-INPUT -m set --match-set {other} src,dst -j DROP\nCOMMIT"
    )
    v2 = raw([f'198.18.1.0/24,tcp:80 comment "{A}"', f'198.18.3.0/24,tcp:80 comment "{C}"'])
    engine.apply({"bundle": _bundle(v1).raw, "version": 1, "confirm_timeout": 0})
    before = {n: sorted(lines) for n, lines in dp.sets.items()}
    engine.apply({"bundle": _bundle(v2).raw, "version": 2, "confirm_timeout": 30})
    assert other not in dp.sets  # a lookup set the pending bundle dropped is gone at once
    assert f'add {NAME} 198.18.3.0/24,tcp:80 comment "{C}"' in dp.sets[NAME]
    engine.rollback("test")
    assert {n: sorted(lines) for n, lines in dp.sets.items()} == before


def test_a_bundle_changing_elements_alone_takes_the_held_bundles_tables():
    """The restore texts are the held bundle's: its parsed tables are taken as they are (no
    50k-rule parse); a text that differs is parsed, and its tables are its own."""
    v1 = _bundle(raw([f'198.18.1.0/24,tcp:80 comment "{A}"']))
    v2 = _bundle(raw([f'198.18.3.0/24,tcp:80 comment "{C}"']))
    again = Bundle.parse(v2.raw, previous=v1)
    assert again.tables["v4"] is v1.tables["v4"] and again.tables == v2.tables
    dropped = _bundle(raw([f'198.18.3.0/24,tcp:80 comment "{C}"'], rule_target="DROP"))
    parsed = Bundle.parse(dropped.raw, previous=v1)
    assert parsed.tables == dropped.tables != v1.tables
