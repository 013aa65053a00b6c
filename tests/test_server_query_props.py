"""Property tests of the query evaluator against straightforward reference computations."""

from __future__ import annotations

import math
from collections import defaultdict
from functools import reduce

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsconnector.protocol.constants import AnswerType
from tsconnector.server.model import Database
from tsconnector.server.query import Session, execute

NAMES = [f"s{i}" for i in range(6)]
BASE = 1_000_000


def _session(db: Database) -> Session:
    return Session(db, "iris", now=lambda: 1_700_000_000.0)


def _db(series: dict[str, list[tuple[int, int]]]) -> Database:
    db = Database("props", 0)
    batch = {name: points for name, points in series.items() if points}
    if batch:
        db.insert(batch)
    return db


points_st = st.lists(
    st.tuples(st.integers(BASE, BASE + 500), st.integers(-1000, 1000)), min_size=1,
    max_size=60)


def _bucket(ts: int, window: int) -> int:
    return -(-ts // window) * window


_REFERENCE = {
    "count": len,
    "sum": sum,
    "min": min,
    "max": max,
    "mean": lambda vs: sum(vs) / len(vs),
}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points=points_st, window=st.integers(1, 120), fn=st.sampled_from(sorted(_REFERENCE)))
def test_windowed_aggregates_match_reference(
    points: list[tuple[int, int]], window: int, fn: str
) -> None:
    db = _db({"s": points})
    tp, answer = execute(_session(db), f'select {fn}({window}) from "s"', None)
    assert tp == AnswerType.RES_QUERY
    groups: dict[int, list[int]] = defaultdict(list)
    for t, v in sorted(points, key=lambda p: p[0]):
        groups[_bucket(t, window)].append(v)
    expected = [[label, _REFERENCE[fn](vs)] for label, vs in sorted(groups.items())]
    got = answer["s"]
    assert [g[0] for g in got] == [e[0] for e in expected]
    for (_, g), (_, e) in zip(got, expected):
        assert math.isclose(g, e, rel_tol=1e-12, abs_tol=1e-9)


@settings(max_examples=120, deadline=None)
@given(points=points_st, a=st.integers(BASE - 10, BASE + 510),
       b=st.integers(BASE - 10, BASE + 510), kind=st.sampled_from(["between", "after", "before"]))
def test_time_ranges_match_reference(
    points: list[tuple[int, int]], a: int, b: int, kind: str
) -> None:
    db = _db({"s": points})
    ordered = sorted(points, key=lambda p: p[0])  # stable: duplicates keep insert order
    if kind == "between":
        query = f'select * from "s" between {a} and {b}'
        if a > b:
            tp, answer = execute(_session(db), query, None)
            assert tp == AnswerType.ERR_QUERY
            assert answer["error_msg"] == (
                f"Start time ({a}) should not be greater than end time ({b})")
            return
        expected = [[t, v] for t, v in ordered if a <= t < b]
    elif kind == "after":
        query = f'select * from "s" after {a}'
        expected = [[t, v] for t, v in ordered if t >= a]
    else:
        query = f'select * from "s" before {a}'
        expected = [[t, v] for t, v in ordered if t < a]
    tp, answer = execute(_session(db), query, None)
    assert tp == AnswerType.RES_QUERY
    assert answer == {"s": expected}


_OPS = {
    "|": lambda x, y: x | y,
    "-": lambda x, y: x - y,
    "&": lambda x, y: x & y,
    "^": lambda x, y: x ^ y,
}


@settings(max_examples=150, deadline=None)
@given(
    present=st.sets(st.sampled_from(NAMES)),
    terms=st.lists(st.sampled_from(NAMES), min_size=1, max_size=5),
    ops=st.lists(st.sampled_from(sorted(_OPS)), min_size=4, max_size=4),
    use_regex=st.booleans(),
)
def test_set_operators_match_reference(
    present: set[str], terms: list[str], ops: list[str], use_regex: bool
) -> None:
    db = _db({name: [(BASE, 1)] for name in present})
    parts = []
    sets = []
    for i, name in enumerate(terms):
        if use_regex and i == 0:
            parts.append("/s[0-2]/")
            sets.append({n for n in present if n in ("s0", "s1", "s2")})
        else:
            parts.append(f'"{name}"')
            sets.append({name} & present)
    text = parts[0]
    for op, part in zip(ops, parts[1:]):
        text += f" {op} {part}"
    expected = reduce(lambda acc, item: _OPS[item[0]](acc, item[1]), zip(ops, sets[1:]), sets[0])
    tp, answer = execute(_session(db), f"select count() from {text}", None)
    assert tp == AnswerType.RES_QUERY
    assert sorted(answer) == sorted(expected)
    tp, answer = execute(_session(db), f"count series {text}", None)
    assert answer == {"series": len(expected)}


_WORDS = [
    "select", "list", "count", "show", "drop", "alter", "create", "grant", "revoke", "series",
    "from", "where", "and", "or", "*", "(", ")", ",", "|", "&", "-", "^", "mean", "sum(1h)",
    "count()", "=>", "'2023-11-14'", '"s1"', "/s.*/", "`g`", "now", "1d", "+", "/", "%",
    "between", "after", "before", "merge", "as", "using", "limit", "10", "name", "==", "~",
    "length", ">", "set", "ignore_threshold", "true", "timeit", "help", "#", "group", "tag",
    "user", "database", "timezone", "'NAIVE'", "filter(>", "5)", "prefix", "'p'", "shards",
]


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(_WORDS), max_size=14).map(" ".join),
))
def test_execute_never_raises(query: str) -> None:
    db = _db({"s1": [(BASE, 1), (BASE + 5, 2)], "s2": [(BASE, 1.5)]})
    tp, answer = execute(_session(db), query, None)
    assert tp in (AnswerType.RES_QUERY, AnswerType.ERR_QUERY, AnswerType.ERR_USER_ACCESS)
    assert isinstance(answer, dict)
    if tp != AnswerType.RES_QUERY:
        assert isinstance(answer["error_msg"], str)
        assert answer["error_msg"]
        assert not answer["error_msg"].startswith("Internal error"), query
