"""The lowering cache: later compiles reuse a rule set's chains only when everything they
depend on is the same, and always give the bytes a fresh compile gives."""

from __future__ import annotations

import copy
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import CompileOptions, DocumentError, PolicyDocument, compile_device
from compiler.lower import RULESET_CACHE, RulesetCache, ruleset_chain

from . import cases
from .test_compile import random_policy
from .test_segments import big_ruleset, document


def fresh(data: dict, device: str, **kwargs):
    RULESET_CACHE.clear()
    return compile_device(PolicyDocument.from_dict(data), device, now=cases.NOW, **kwargs)


def cached(data: dict, device: str, **kwargs):
    return compile_device(PolicyDocument.from_dict(data), device, now=cases.NOW, **kwargs)


def test_equal_document_reuses_the_chains_and_gives_the_same_bytes():
    data = cases.example()
    first = fresh(data, "web-1")
    again = cached(copy.deepcopy(data), "web-1")  # another document object, equal content
    assert again.to_json() == first.to_json()
    name = ruleset_chain("web-baseline", "input")
    assert (
        again.program.tables[(4, "filter")].chains[name]
        is first.program.tables[(4, "filter")].chains[name]
    )


def test_every_input_of_the_chains_is_part_of_the_key():
    base = cases.example()
    cached(base, "web-1")
    variants = []
    edited = copy.deepcopy(base)
    edited["rulesets"][0]["rules"][0]["action"] = "drop"  # a rule
    variants.append((edited, {}))
    objects = copy.deepcopy(base)  # an object a rule names
    objects["address_groups"][0]["members"].append("198.19.7.7")
    variants.append((objects, {}))
    variants.append((base, {"options": CompileOptions(ipset_threshold=1)}))  # an option
    variants.append((base, {"options": CompileOptions(log_rate_limit="3/second")}))
    variants.append((base, {"options": CompileOptions(log_rate_limit=None)}))
    for data, kwargs in variants:
        assert cached(data, "web-1", **kwargs).to_json() == fresh(data, "web-1", **kwargs).to_json()
        cached(base, "web-1")


def test_expiry_is_part_of_the_key():
    data = cases.example()
    data["rulesets"][0]["rules"][0]["expires_at"] = (cases.NOW + timedelta(hours=1)).isoformat()
    doc = PolicyDocument.from_dict(data)
    before = compile_device(doc, "web-1", now=cases.NOW)
    after = compile_device(doc, "web-1", now=cases.NOW + timedelta(hours=2))
    RULESET_CACHE.clear()
    assert (
        after.to_json()
        == compile_device(doc, "web-1", now=cases.NOW + timedelta(hours=2)).to_json()
    )
    assert after.hash != before.hash


@given(random_policy(), random_policy())
@settings(max_examples=60, deadline=None)
def test_random_documents_compile_as_if_nothing_was_cached(one, two):
    """Whatever an earlier compile left in the cache, the bundle is a fresh compile's."""
    assert_second_compile_is_fresh(one, two)


def assert_second_compile_is_fresh(one: dict, two: dict) -> None:
    """Compile `one`, then `two` with what that left in the cache: the bytes of a compile
    of `two` from an empty cache (documents the parser refuses are skipped)."""
    try:
        PolicyDocument.from_dict(one)
        PolicyDocument.from_dict(two)
    except DocumentError:
        return
    for threshold in (1, 4):
        options = CompileOptions(ipset_threshold=threshold)
        fresh(one, "d", options=options)
        warm = cached(two, "d", options=options)
        assert warm.to_json() == fresh(two, "d", options=options).to_json()


def test_least_recently_used_entries_go_first():
    cache = RulesetCache(max_rules=10)
    cache.put(("a",), "A", 4)
    cache.put(("b",), "B", 4)
    assert cache.get(("a",)) == "A"  # a is now the most recent
    cache.put(("c",), "C", 4)
    assert cache.get(("b",)) is None and cache.get(("a",)) == "A" and cache.get(("c",)) == "C"
    cache.put(("a",), "A2", 4)  # a rule set of that name built again: replaces it
    assert cache.get(("a",)) == "A2"
    cache.put(("huge",), "H", 11)  # larger than the whole cache: not kept
    assert cache.get(("huge",)) is None


@st.composite
def edited(draw):
    """A random policy (rules with ids), and the same policy after a few rule edits."""
    one = draw(random_policy())
    rules = one["rulesets"][0]["rules"]
    for i, rule in enumerate(rules):
        rule["id"] = f"00000000-0000-4000-8000-{i:012d}"
    two = copy.deepcopy(one)
    changed = two["rulesets"][0]["rules"]
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["drop", "move", "action", "negate", "insert"]))
        if not changed:
            break
        at = draw(st.integers(0, len(changed) - 1))
        if what == "drop":
            changed.pop(at)
        elif what == "move":
            changed.insert(draw(st.integers(0, len(changed) - 1)), changed.pop(at))
        elif what == "action":
            changed[at]["action"] = "drop" if changed[at]["action"] != "drop" else "accept"
        elif what == "negate":
            changed[at]["sources_negate"] = not changed[at].get("sources_negate", False)
        else:
            changed.insert(
                at,
                {
                    "chain": "input",
                    "action": "reject",
                    "protocol": "tcp",
                    "dports": ["22"],
                    "id": "00000000-0000-4000-8000-999999999999",
                },
            )
    return one, two


@given(edited())
@settings(max_examples=80, deadline=None)
def test_an_edited_rule_set_compiles_as_if_nothing_was_cached(pair):
    assert_second_compile_is_fresh(*pair)


def test_an_edit_in_a_long_rule_set_reuses_every_other_segment():
    rules = big_ruleset(3000)
    first = fresh(document(rules), "fw")
    changed = [dict(r) for r in rules]
    changed[1500]["action"] = "accept" if changed[1500]["action"] != "accept" else "drop"
    warm = cached(document(changed), "fw")
    assert warm.to_json() == fresh(document(changed), "fw").to_json()
    before = first.program.tables[(4, "filter")].chains
    after = warm.program.tables[(4, "filter")].chains
    ours = [n for n in after if n.startswith("RPT-I-big-im")]
    shared = [n for n in ours if n in before and after[n] is before[n]]
    assert len(ours) > 5 and len(shared) == len(ours) - 1  # all but the edited segment


@st.composite
def two_rulesets(draw):
    """Rule sets A and B over the same groups (so they can share sets), devices d1 = [A, B]
    and d2 = [B], and the same document with one rule of B changed."""
    one, two = draw(random_policy()), draw(random_policy())
    a, b = one["rulesets"][0]["rules"], two["rulesets"][0]["rules"]
    shared = {"chain": "input", "action": "accept", "sources": ["shared"]}
    a.insert(draw(st.integers(0, len(a))), dict(shared))
    b.insert(draw(st.integers(0, len(b))), dict(shared, action="drop"))
    one["address_groups"].append(
        {
            "name": "shared",
            "members": [
                "198.18.40.1",
                "198.18.42.0/24",
                "198.18.44.9",
                "198.18.46.0/25",
                "198.18.48.3",
            ],
        }
    )
    for prefix, rules in (("a", a), ("b", b)):
        for i, rule in enumerate(rules):
            rule["id"] = f"00000000-0000-4000-8000-{prefix}{i:011d}"
    data = {
        "version": 1,
        "address_groups": one["address_groups"],
        "rulesets": [{"name": "A", "rules": a}, {"name": "B", "rules": b}],
        "devices": [{"name": "d1", "rulesets": ["A", "B"]}, {"name": "d2", "rulesets": ["B"]}],
    }
    edited = copy.deepcopy(data)
    if b:
        rule = edited["rulesets"][1]["rules"][draw(st.integers(0, len(b) - 1))]
        rule["action"] = "drop" if rule["action"] != "drop" else "accept"
    return data, edited


@given(two_rulesets(), st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_rule_sets_sharing_sets_compile_as_if_nothing_was_cached(docs, threshold):
    """A set made by one rule set and used by another too: every device's bundle still
    creates every set it uses, whatever order devices and edits come in."""
    data, edited = docs
    try:
        PolicyDocument.from_dict(data)
        PolicyDocument.from_dict(edited)
    except DocumentError:
        return
    options = CompileOptions(ipset_threshold=threshold)
    RULESET_CACHE.clear()
    for doc, device in (
        (data, "d1"),
        (data, "d2"),
        (edited, "d1"),
        (edited, "d2"),
        (data, "d2"),
        (data, "d1"),
    ):
        warm = cached(doc, device, options=options)
        assert warm.to_json() == fresh(doc, device, options=options).to_json(), device
        cached(data, "d1", options=options)  # leave the cache as another compile would
