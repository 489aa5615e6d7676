"""Combining a jump's matches with an inlined rule's (rules.onboarding.matches.combine)."""

from __future__ import annotations

from rules.onboarding.dumps import Match
from rules.onboarding.matches import NEVER, combine, negated


def test_the_narrower_address_and_the_common_ports_are_kept():
    outer = Match(sources=("198.18.0.0/16",), protocol="tcp", dports=("1-1000",))
    inner = Match(sources=("198.18.4.0/24",), dports=("443", "8000-8100"))
    both = combine(outer, inner)
    assert isinstance(both, Match)
    assert both.sources == ("198.18.4.0/24",) and both.protocol == "tcp"
    assert both.dports == ("443",)
    assert outer.sources == ("198.18.0.0/16",)  # the jump's own match is left alone


def test_contradictions_match_no_packet():
    assert combine(Match(protocol="tcp"), Match(protocol="udp")) == NEVER
    assert combine(Match(dports=("22",)), Match(dports=("80",))) == NEVER
    assert combine(Match(sources=("198.18.0.0/24",)), Match(sources=("198.18.1.0/24",))) == NEVER
    assert combine(Match(states=frozenset({"new"})), Match(states=frozenset({"established"}))) == (
        NEVER
    )


def test_what_the_document_cannot_say_is_none():
    assert combine(Match(rate_limit="1/second"), Match(rate_limit="2/second")) is None
    assert combine(Match(in_interface="eth+"), Match(in_interface="eth0")) is None
    negated = Match(sources=("198.18.0.0/24",), sources_negate=True)
    assert combine(negated, Match(sources=("198.18.0.0/16",))) is None  # a hole in it
    assert combine(negated, Match(sources=("198.18.0.0/24",), sources_negate=True)) == negated
    assert combine(negated, Match(sources=("198.18.1.0/24",), sources_negate=True)) is None
    assert combine(Match(sources=("@set:admins",)), Match(sources=("198.18.0.5",))) is None


def test_negated_and_plain_literal():
    """`! -s net` then `-s x`: x when disjoint from net, never when inside it."""
    outside = Match(sources=("198.18.0.0/24",), sources_negate=True)
    assert combine(outside, Match(sources=("198.18.0.5",))) == NEVER
    assert combine(outside, Match(sources=("198.18.7.5",))) == Match(sources=("198.18.7.5",))
    assert combine(Match(sources=("198.18.7.5",)), outside) == Match(sources=("198.18.7.5",))


def test_negated_conditions():
    src = Match(sources=("198.18.0.0/24",))
    assert negated(src) == Match(sources=("198.18.0.0/24",), sources_negate=True)
    assert negated(Match(destinations=("198.18.1.1",), destinations_negate=True)) == Match(
        destinations=("198.18.1.1",)
    )
    assert negated(Match(states=frozenset({"established", "related"}))) == Match(
        states=frozenset({"new", "invalid", "untracked"})
    )
    assert negated(Match(sources=("198.18.0.0/24",), protocol="tcp")) is None  # two conditions
    assert negated(Match(protocol="tcp")) is None
    assert negated(Match(in_interface="eth0")) is None


def test_one_sided_fields_and_states_carry_over():
    outer = Match(destinations=("198.18.1.10",), destinations_negate=True)
    inner = Match(rate_limit="5/second", burst=10, states=frozenset({"new", "established"}))
    both = combine(outer, inner)
    assert isinstance(both, Match)
    assert both.destinations == ("198.18.1.10",) and both.destinations_negate
    assert (both.rate_limit, both.burst) == ("5/second", 10)
    assert both.states == frozenset({"new", "established"})
