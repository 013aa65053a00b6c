"""The shared linear-time regex core: exactly ``re.search``'s answers, in linear time."""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsconnector.linregex import DfaState, Nfa, TooLarge, Unsupported, parse

ATOMS = ["a", "b", "A", "k", "K", "i", "İ", "ı", "é", ".", "[ab]", "[^a]", "[a-cİ]",
         "\\d", "\\w", "\\W", "\\s", "\\n", "(?:)"]
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{1,2}", "*?", "+?", "{0,}"]
BOUNDED = ["", "?", "{2}", "{1,2}"]
ANCHORS = ["^", "$", "\\b", "\\B", "\\A", "\\Z"]
FLAGS = ["", "(?i)", "(?m)", "(?s)", "(?a)", "(?ai)", "(?ims)"]
GROUPS = ["(", "(?:", "(?i:", "(?a:", "(?-i:"]
SUBJECTS = st.text("abAkKiİıé1 \n", max_size=12)


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    """Concatenations of atoms, anchors and groups of alternatives, each maybe repeated."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 9))
        if kind < 6:
            parts.append(draw(st.sampled_from(ATOMS)) + draw(st.sampled_from(QUANTIFIERS)))
        elif kind < 7:
            parts.append(draw(st.sampled_from(ANCHORS)))
        elif depth < 2:
            inner = [draw(patterns(depth + 1)) for _ in range(draw(st.integers(1, 3)))]
            opener = draw(st.sampled_from(GROUPS))
            # At most two unbounded repeats nested, or re (the oracle) may backtrack
            # for minutes on Python 3.10.
            repeat = draw(st.sampled_from(QUANTIFIERS if depth == 0 else BOUNDED))
            parts.append(opener + "|".join(inner) + ")" + repeat)
    return "".join(parts)


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
        expected = re.compile(pattern, options)
    except re.error:
        with pytest.raises(re.error):
            parse(pattern, options)
        return
    nfa = _nfa(pattern, options)
    cache: dict[Any, DfaState] = {}  # one DFA cache across subjects, as callers do
    for subject in subjects:
        assert nfa.search(subject, cache) is (expected.search(subject) is not None), (
            pattern, options, subject)


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
