"""Safe query building: quoting round trips, placeholder contexts, and injection safety."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsconnector.ql import (
    Duration,
    Group,
    Name,
    Regex,
    Str,
    Time,
    query,
    quote_group,
    quote_name,
    quote_regex,
    quote_str,
)
from tsconnector.server.query.grammar import ParseFailure, parse

UTC = dt.timezone.utc


# --- tiny reference unquoters (independent of the code under test) ------------------------


def unquote(text: str, quote: str) -> str:
    assert text[0] == quote
    assert text[-1] == quote
    body = text[1:-1]
    out, i = [], 0
    while i < len(body):
        if body[i] == quote:
            assert body[i + 1] == quote, "a lone quote would end the literal"
            out.append(quote)
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def unquote_regex(text: str) -> tuple[str, bool]:
    """The pattern and flag of ``/.../i``; ``\\/`` reads as ``/`` (as the engine reads it)."""
    flag = text.endswith("/i")
    body = text[1 : -2 if flag else -1]
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            pair = body[i : i + 2]
            out.append("/" if pair == "\\/" else pair)
            i += 2
        else:
            assert body[i] != "/", "an unescaped slash would end the regex"
            out.append(body[i])
            i += 1
    return "".join(out), flag


def normal_regex(pattern: str) -> str:
    """A pattern with escaped slashes read as slashes, for comparison."""
    return re.sub(r"\\(.)", lambda m: "/" if m.group(1) == "/" else m.group(0), pattern)


@given(st.text())
def test_quote_name_round_trips(text: str) -> None:
    assert unquote(quote_name(text), '"') == text


@given(st.text())
def test_quote_str_round_trips(text: str) -> None:
    assert unquote(quote_str(text), "'") == text


@given(st.text())
def test_quote_group_round_trips(text: str) -> None:
    assert unquote(quote_group(text), "`") == text


@given(st.text(), st.booleans())
def test_quote_regex_round_trips(pattern: str, ignorecase: bool) -> None:
    if re.search(r"(?<!\\)(\\\\)*\\$", pattern):  # ends with a lone backslash
        with pytest.raises(ValueError, match="backslash"):
            quote_regex(pattern)
        return
    literal = quote_regex(pattern, ignorecase=ignorecase)
    back, flag = unquote_regex(literal)
    assert flag == ignorecase
    assert normal_regex(back) == normal_regex(pattern).replace("\\\n", "\\n")


def test_quote_regex_details() -> None:
    assert quote_regex("a/b") == "/a\\/b/"
    assert quote_regex("a\\/b") == "/a\\/b/"
    assert quote_regex(re.compile("x.*", re.IGNORECASE)) == "/x.*/i"
    assert quote_regex(re.compile("x")) == "/x/"
    with pytest.raises(ValueError, match="IGNORECASE"):
        quote_regex(re.compile("x", re.MULTILINE))
    with pytest.raises(TypeError):
        quote_name(5)  # type: ignore[arg-type]


# --- rendering -----------------------------------------------------------------------------


def test_contexts() -> None:
    start = dt.datetime(2023, 11, 14, 0, 0, 0, 500000)
    assert query("select * from $1 after $2", 'a"b', start) == (
        'select * from "a""b" after 1699920001'
    )
    assert query(
        "select mean($1) from $2, $3 - $4 between $5 and now - $6",
        dt.timedelta(hours=1), "x", re.compile("a/b", re.I), ["p", Name("q")], 5,
        dt.timedelta(days=1),
    ) == 'select mean(1h) from "x", /a\\/b/i - "p", "q" between 5 and now - 1d'
    assert query("list series name, length $1 where length > $2 limit $3", "x", 5, 10) == (
        'list series name, length "x" where length > 5 limit 10'
    )
    assert query("count series $1", "s") == 'count series "s"'
    assert query("drop series $1", "s") == 'drop series "s"'
    assert query("alter series $1 tag `t`", "s") == 'alter series "s" tag `t`'
    assert query("select * from $1 merge as $2 prefix $3", "a", "m", "p-") == (
        "select * from \"a\" merge as 'm' prefix 'p-'"
    )
    assert query("list series where name == $1", "it's") == "list series where name == 'it''s'"
    # explicit wrappers override the context
    assert query("select * from $1", Str("x")) == "select * from 'x'"
    assert query("select * from $1", Group("g`1")) == "select * from `g``1`"
    assert query("list series where name == $1", Name("n")) == 'list series where name == "n"'
    assert query("select * from $1", Regex("a.*", ignorecase=True)) == "select * from /a.*/i"
    assert query("select mean($1) from $2", Duration("5m"), "s") == 'select mean(5m) from "s"'
    assert query("select mean($1) from $2", Duration(90), "s") == 'select mean(90) from "s"'


def test_time_rounding_by_context() -> None:
    t = dt.datetime(2023, 1, 1, 0, 0, 0, 1)  # one microsecond past a second
    base = 1_672_531_200
    assert query('select * from "a" after $1', t) == f'select * from "a" after {base + 1}'
    assert query('select * from "a" before $1', t) == f'select * from "a" before {base + 1}'
    assert query('select * from "a" between $1 and $2', t, t) == (
        f'select * from "a" between {base + 1} and {base + 1}'
    )
    assert query("list series where start >= $1 and end > $2", t, t) == (
        f"list series where start >= {base + 1} and end > {base}"
    )
    assert query("list series where start < $1 or end <= $2", t, t) == (
        f"list series where start < {base + 1} or end <= {base}"
    )
    with pytest.raises(ValueError, match=r"parameter \$1"):
        query("list series where start == $1", t)
    assert query("list series where start == $1", Time(t, rounding="floor")) == (
        f"list series where start == {base}"
    )
    assert query('select * from "a" after $1', t, precision="us") == (
        f'select * from "a" after {(base * 10**6) + 1}'
    )
    assert query('select * from "a" after $1', dt.date(2023, 1, 1), precision=1) == (
        f'select * from "a" after {base * 1000}'
    )
    aware = dt.datetime(2023, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert query('select * from "a" after $1', aware) == f'select * from "a" after {base}'
    assert query('select * from "a" after $1', np.datetime64("2023-01-01", "D")) == (
        f'select * from "a" after {base}'
    )
    assert query('select * from "a" after now - $1', dt.timedelta(milliseconds=1500),
                 precision="ms") == 'select * from "a" after now - 1500'
    assert query('select * from "a" after $1', "2023-01-01") == (
        "select * from \"a\" after '2023-01-01'"
    )


def test_literals() -> None:
    def render(value: Any) -> str:
        return query("select filter(> $1) from \"a\"", value)[len("select filter(> ") : -10]

    assert render(1.5) == "1.5"
    assert render(1e-7) == "0.0000001"
    assert render(1e20) == "100000000000000000000.0"
    assert render(float("nan")) == "nan"
    assert render(float("-inf")) == "-inf"
    assert render(-3) == "-3"
    assert render(np.int32(7)) == "7"
    assert render(np.float32(0.5)) == "0.5"
    assert query("alter database set drop_threshold $1", 0.5).endswith("0.5")
    assert query("alter database set backup_mode $1", True).endswith("true")
    assert query("select mean($1) from \"a\"", dt.timedelta(0)) == 'select mean(0s) from "a"'
    assert query("select mean($1) from \"a\"", dt.timedelta(weeks=2)).startswith("select mean(2w)")
    assert query("select mean($1) from \"a\"", dt.timedelta(seconds=90)).startswith(
        "select mean(90s)"
    )
    assert query("select mean($1) from \"a\"", dt.timedelta(seconds=-60)).startswith(
        "select mean(-60)"
    )


@pytest.mark.parametrize(
    ("stmt", "params", "error", "match"),
    [
        ("select * from $1", (5,), TypeError, r"parameter \$1.*series name"),
        ("select * from $1", ([],), ValueError, r"parameter \$1.*empty"),
        ("select * from $1", ([["a"]],), TypeError, r"parameter \$1.*nested"),
        ("select * from $2", ("a",), ValueError, r"\$2"),
        ("select * from $1", ("a", "b"), ValueError, r"unused.*\$2"),
        ("select * from $0", ("a",), ValueError, r"\$1"),
        ("select * from $1x", ("a",), ValueError, "space"),
        ("select * from a$1", ("a",), ValueError, "glued"),
        ("select * from $", (), ValueError, "placeholder"),
        ("select * from 'x", (), ValueError, "unterminated"),
        ("list series where length > $1", ([1],), TypeError, "lists"),
        ("select * from \"a\" after $1", (2**64,), OverflowError, r"parameter \$1"),
        ("select * from \"a\" after $1", (1.5,), TypeError, "float"),
        ("select * from \"a\" after $1", (object(),), TypeError, r"parameter \$1"),
        ("select mean($1) from \"a\"", (Duration("5x"),), ValueError, "duration"),
        ("select mean($1) from \"a\"", (dt.timedelta(microseconds=1),), ValueError, "whole"),
    ],
)
def test_errors(stmt: str, params: tuple[Any, ...], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        query(stmt, *params)


def test_placeholders_in_the_statements_own_literals_are_skipped() -> None:
    assert query("select * from \"$1\" where name == $1 # $2", "v") == (
        "select * from \"$1\" where name == 'v' # $2"
    )
    assert query("select * from /a$1/, $1", "x") == 'select * from /a$1/, "x"'
    assert query("select * from 'it''s $1', $1", "x") == "select * from 'it''s $1', \"x\""
    assert query("select * from `g$1` after now / 2 - $1", 5) == (
        "select * from `g$1` after now / 2 - 5"
    )
    assert query("select * from $1 $1", "x") == 'select * from "x" "x"'


# --- injection safety against the server's own parser ------------------------------------


def shape(node: Any) -> tuple[Any, ...]:
    return (id(node.element), tuple(shape(child) for child in node.children))


TEMPLATES: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("select * from $1", st.text()),
    ("select * from $1 after $2", st.tuples(st.text(), st.datetimes(
        min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1)))),
    ("select * from $1, $2 - $3", st.tuples(st.text(), st.text().map(
        lambda t: Regex(re.sub(r"\\+$", "", t))), st.text())),
    ("list series where name == $1", st.text()),
    ("select * from \"a\" merge as $1", st.text()),
    ("select mean(1h) prefix $1 from \"a\"", st.text()),
    ("select filter(> $1) from \"a\"", st.floats(allow_nan=False, allow_infinity=False)),
    # (SiriDB's grammar has no head/tail after a time range.)
    ("select * from \"a\" between $1 and $2 + $3", st.tuples(
        st.integers(min_value=0, max_value=2**63 - 1),
        st.integers(min_value=0, max_value=2**63 - 1),
        st.integers(min_value=1, max_value=2**63 - 1))),
    ("select mean($1) from \"a\"", st.integers(min_value=0, max_value=10**10).map(
        lambda s: dt.timedelta(seconds=s))),
]


def reference_shape(stmt: str) -> tuple[Any, ...]:
    values: dict[str, tuple[Any, ...]] = {
        "select * from $1": ("x",),
        "select * from $1 after $2": ("x", dt.datetime(2000, 1, 1)),
        "select * from $1, $2 - $3": ("x", re.compile("x"), "y"),
        "list series where name == $1": ("x",),
        "select * from \"a\" merge as $1": ("x",),
        "select mean(1h) prefix $1 from \"a\"": ("x",),
        "select filter(> $1) from \"a\"": (1.5,),
        "select * from \"a\" between $1 and $2 + $3": (1, 2, 3),
        "select mean($1) from \"a\"": (dt.timedelta(hours=1),),
    }
    return shape(parse(query(stmt, *values[stmt])))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_value_changes_the_statement_structure(data: st.DataObject) -> None:
    stmt, strategy = data.draw(st.sampled_from(TEMPLATES))
    params = data.draw(strategy)
    if not isinstance(params, tuple):
        params = (params,)
    rendered = query(stmt, *params)
    try:
        tree = parse(rendered)
    except ParseFailure as exc:  # pragma: no cover - would be a quoting bug
        raise AssertionError(f"{rendered!r} does not parse: {exc}") from None
    assert shape(tree) == reference_shape(stmt), rendered


# --- round trip through the embedded server -----------------------------------------------


class _Background:
    """An embedded server and a connected client on a loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Any = None
        self.client: Any = None
        self.run(self._start())

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        from tsconnector.client import TsClient
        from tsconnector.server import EmbeddedServer

        self.server = EmbeddedServer(port=0)
        await self.server.start()
        self.client = TsClient("iris", "siri", "dbtest", [("127.0.0.1", self.server.port)])
        await self.client.connect()

    async def _stop(self) -> None:
        self.client.close()
        await self.client.wait_closed()
        self.server.close()
        await self.server.wait_closed()

    def stop(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def background() -> Iterator[_Background]:
    bg = _Background()
    try:
        yield bg
    finally:
        bg.stop()


_counter = iter(range(10**9))


@pytest.mark.slow
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    # SiriDB keeps names and queries as C strings: nothing after a NUL byte counts.
    text=st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=30),
    points=st.lists(
        st.tuples(st.integers(min_value=1_600_000_000, max_value=1_700_000_000), st.integers(
            min_value=-(2**63), max_value=2**63 - 1)),
        min_size=1, max_size=5, unique_by=lambda p: p[0],
    ),
)
def test_any_name_round_trips_through_the_server(
    background: _Background, text: str, points: list[tuple[int, int]]
) -> None:
    name = f"{text}#{next(_counter)}"  # hypothesis replays examples; keep names fresh
    client = background.client
    rows = [list(p) for p in points]
    background.run(client.insert({name: rows}))
    answer = background.run(client.query("select * from $1", params=[name]))
    assert answer == {name: sorted(rows)}
    call: Callable[..., Any] = client.query
    by_list = background.run(call("select * from $1", params=[[name]]))
    assert by_list == answer
