"""The catalog's SQL helpers: linear-time regex, ``$n`` renumbering, LIKE as GLOB, names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regex_oracle import bounded_search, regex_patterns

from tsconnector.catalog import quote_ident
from tsconnector.catalog.dialects import like_to_glob
from tsconnector.catalog.names import check_field_name, check_table_name, derived_name
from tsconnector.catalog.params import count_params, renumber, sqlite_bindings
from tsconnector.catalog.regex import compile_regex, sqlite_regexp

# ------------------------------------------------------------------------------ regex

ATOMS = ["a", "b", "A", ".", "[ab]", "[^a]", "\\d", "\\w", "\\s", "\\n", "(?:)", "é"]
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{1,2}", "*?", "{0,}"]
ANCHORS = ["^", "$", "\\b", "\\B", "\\A", "\\Z"]
FLAGS = ["", "(?i)", "(?m)", "(?s)", "(?is)"]


def patterns() -> st.SearchStrategy[str]:
    return regex_patterns(ATOMS, QUANTIFIERS, ANCHORS)


@settings(max_examples=400)
@given(flags=st.sampled_from(FLAGS), body=patterns(), value=st.text("abAB1é \n", max_size=10))
def test_regex_answers_exactly_as_re_search(flags: str, body: str, value: str) -> None:
    pattern = flags + body
    try:
        expected = bounded_search(pattern, value)
    except re.error:
        with pytest.raises(ValueError):
            compile_regex(pattern)
        return
    assert compile_regex(pattern).search(value) is expected, (pattern, value)


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)*b", ".*.*.*.*=", "(\\w+\\s?)+$", "(a*)*b"])
def test_catastrophic_patterns_take_linear_work(pattern: str) -> None:
    matcher = compile_regex(pattern)
    value = "a" * 20_000 + "!"
    assert matcher.search(value) is False  # none of them matches a run of a's then "!"
    # One cached transition per distinct (state, character): a handful, not 20,000.
    assert len(matcher._moves) < 50
    assert matcher.search(value) is False


@pytest.mark.parametrize(
    "pattern, why",
    [
        ("(a)\\1", "backreferences"),
        ("a(?=b)", "look-ahead"),
        ("(?<!a)b", "look-ahead"),
        ("(a)?(?(1)b|c)", "conditional"),
        ("(", "invalid"),
        ("(?:a{100}){100}", "too large"),
        ("x" * 1001, "longer than"),
        ("a\x00", "NUL"),
    ],
)
def test_regex_rejects_what_an_automaton_cannot_do(pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        compile_regex(pattern)


def test_sqlite_regexp_function() -> None:
    assert sqlite_regexp("^a", "abc") is True
    assert sqlite_regexp("^a", "bc") is False
    assert sqlite_regexp(None, "x") is None
    assert sqlite_regexp("x", None) is None


# ------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "sql, dialect, expected",
    [
        ("SELECT $1, $2, $1", "postgresql", "SELECT $11, $12, $11"),
        ("SELECT '$1', \"$2\", $3", "postgresql", "SELECT '$1', \"$2\", $13"),
        ("SELECT 'it''s $1', $1", "sqlite", "SELECT 'it''s $1', $11"),
        ("SELECT E'\\' $1', $1", "postgresql", "SELECT E'\\' $1', $11"),
        (
            "SELECT $$ $1 $$, $tag$ $1 $tag$, $1",
            "postgresql",
            "SELECT $$ $1 $$, $tag$ $1 $tag$, $11",
        ),
        ("SELECT 1 -- $1\n, $1", "sqlite", "SELECT 1 -- $1\n, $11"),
        ("SELECT /* $1 /* $2 */ $3 */ $1", "postgresql", "SELECT /* $1 /* $2 */ $3 */ $11"),
        ("SELECT /* $1 */ $3 */", "sqlite", "SELECT /* $1 */ $13 */"),
        ("SELECT a$1, [$1], `$1`, $1", "sqlite", "SELECT a$1, [$1], `$1`, $11"),
        ("SELECT $1::jsonb", "postgresql", "SELECT $11::jsonb"),
    ],
)
def test_renumber_touches_only_placeholders(sql: str, dialect: str, expected: str) -> None:
    assert renumber(sql, 10, dialect) == expected
    assert renumber(sql, 0, dialect) == sql


def test_count_params() -> None:
    assert count_params("SELECT 1", "sqlite") == 0
    assert count_params("SELECT $2, '$9', $1", "postgresql") == 2


TOKENS = ["'$1'", '"$2"', "$1", "$2", "x", "-- $3\n", "/* $4 */", "$$ $1 $$", "E'\\' $1'", "a$1"]


@given(st.lists(st.sampled_from(TOKENS)))
def test_renumber_shifts_exactly_the_real_placeholders(tokens: list[str]) -> None:
    sql = " ".join(tokens)
    expected = " ".join({"$1": "$6", "$2": "$7"}.get(t, t) for t in tokens)
    assert renumber(sql, 5, "postgresql") == expected
    assert count_params(sql, "postgresql") == max(
        (int(t[1]) for t in tokens if t in ("$1", "$2")), default=0
    )


def test_sqlite_bindings() -> None:
    assert sqlite_bindings(["a", 2]) == {"1": "a", "2": 2}
    many = sqlite_bindings(list(range(1500)))
    assert many["1500"] == 1499


# ------------------------------------------------------------------------ LIKE, names


@pytest.mark.parametrize(
    "like, glob",
    [
        ("a%", "a*"),
        ("_b", "?b"),
        ("100\\%", "100%"),
        ("a*b?", "a[*]b[?]"),
        ("[x]", "[[]x]"),
        ("\\\\", "\\"),
        ("\\_", "_"),
    ],
)
def test_like_to_glob(like: str, glob: str) -> None:
    assert like_to_glob(like) == glob


def test_names() -> None:
    assert check_table_name("a_b1") == "a_b1"
    for bad in ("A", "a__b", "x" * 49, "tsconnector_x", "pg_x", "sqlite_x", "a-b", 1):
        with pytest.raises((ValueError, TypeError)):
            check_table_name(bad)
    assert check_table_name("_x") == "_x"
    assert check_field_name("Name_1") == "Name_1"
    assert check_field_name("id", allow_reserved=True) == "id"
    with pytest.raises(ValueError):
        check_field_name("id")
    assert quote_ident('a"b') == '"a""b"'
    with pytest.raises(ValueError):
        quote_ident("a\x00")
    long = derived_name("t" * 48, "ix_" + "f" * 63)
    assert len(long) <= 63
    assert long != derived_name("t" * 48, "ix_" + "f" * 62 + "g")
