"""The shared linear-time regex core: exactly ``re.search``'s answers, in linear time."""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regex_oracle import bounded_search, regex_patterns

from tsconnector.linregex import DfaState, Nfa, TooLarge, Unsupported, parse

ATOMS = ["a", "b", "A", "k", "K", "i", "İ", "ı", "é", ".", "[ab]", "[^a]", "[a-cİ]",
         "\\d", "\\w", "\\W", "\\s", "\\n", "(?:)"]
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{1,2}", "*?", "+?", "{0,}"]
BOUNDED = ["", "?", "{2}", "{1,2}"]
ANCHORS = ["^", "$", "\\b", "\\B", "\\A", "\\Z"]
FLAGS = ["", "(?i)", "(?m)", "(?s)", "(?a)", "(?ai)", "(?ims)"]
GROUPS = ["(", "(?:", "(?i:", "(?a:", "(?-i:"]
SUBJECTS = st.text("abAkKiİıé1 \n", max_size=12)


def patterns() -> st.SearchStrategy[str]:
    """At most two unbounded repeats nested: fewer examples for the oracle to reject."""
    return regex_patterns(ATOMS, QUANTIFIERS, ANCHORS, GROUPS, inner_quantifiers=BOUNDED)


def _nfa(pattern: str, flags: int = 0, max_states: int = 10_000) -> Nfa:
    items, global_flags = parse(pattern, flags)
    return Nfa(items, global_flags, max_states=max_states)


@settings(max_examples=500, deadline=None)
@given(flags=st.sampled_from(FLAGS), body=patterns(), ignore_case=st.booleans(),
       subjects=st.lists(SUBJECTS, min_size=1, max_size=6))
def test_search_answers_exactly_as_re_search(
    flags: str, body: str, ignore_case: bool, subjects: list[str]
) -> None:
    pattern = flags + body
    options = re.IGNORECASE if ignore_case else 0
    try:
        re.compile(pattern, options)
    except re.error:
        with pytest.raises(re.error):
            parse(pattern, options)
        return
    nfa = _nfa(pattern, options)
    cache: dict[Any, DfaState] = {}  # one DFA cache across subjects, as callers do
    for subject in subjects:
        answer = bounded_search(pattern, subject, options)
        assert nfa.search(subject, cache) is answer, (pattern, options, subject)


@pytest.mark.parametrize(
    "pattern, subject",
    [("(?a:\\w)+$", "é"), ("(?a:\\bx)+", "éx"), ("(?a:(?u:\\w)\\w)+", "éa")],
)
def test_a_scoped_type_flag_replaces_the_one_in_effect(pattern: str, subject: str) -> None:
    assert _nfa(pattern).search(subject, {}) is (re.search(pattern, subject) is not None)


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)*b", ".*.*.*.*=", "(\\w+\\s?)+$"])
def test_catastrophic_patterns_build_a_small_dfa(pattern: str) -> None:
    nfa = _nfa(pattern)
    cache: dict[Any, DfaState] = {}
    assert nfa.search("a" * 20_000 + "!", cache) is False
    assert len(cache) < 50  # a handful of DFA transitions, not one per character


def test_one_cache_may_be_shared_by_threads() -> None:
    nfa = _nfa("(a|ab)*c\\b")
    cache: dict[Any, DfaState] = {}
    subjects = ["ab" * n + ("c" if n % 2 else "cd") for n in range(200)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda s: nfa.search(s, cache), subjects * 4))
    assert answers == [re.search("(a|ab)*c\\b", s) is not None for s in subjects * 4]


@pytest.mark.parametrize("pattern", ["(a)\\1", "a(?=b)", "(?<!a)b", "(a)?(?(1)b|c)"])
def test_constructs_without_an_automaton_are_unsupported(pattern: str) -> None:
    with pytest.raises(Unsupported):
        _nfa(pattern)


def test_state_limit() -> None:
    with pytest.raises(TooLarge) as info:
        _nfa("(?:a{100}){100}", max_states=5000)
    assert info.value.limit == 5000
    assert len(_nfa("a{100}").kinds) == 101


@pytest.mark.skipif(sys.version_info < (3, 11), reason="atomic groups need Python 3.11")
def test_atomic_groups_are_unsupported_unless_built_as_plain_groups() -> None:
    with pytest.raises(Unsupported):
        _nfa("(?>a*)a")
    with pytest.raises(Unsupported):
        _nfa("a*+a")
    items, flags = parse("(?>a*)a")
    loose = Nfa(items, flags, max_states=100, atomic_as_plain=True)
    # The approximation matches where re, which never backtracks into the group, does not.
    assert loose.search("aa", {}) is True
    assert re.search("(?>a*)a", "aa") is None
