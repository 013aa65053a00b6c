"""Selects read numeric series as numpy arrays: the same answers as reading lists.

A series keeps its points in lists and a numpy mirror of them (:mod:`.mirror`);
``select *`` and chains that start with a windowed aggregate read the mirror. Checked
against the list path of the same query on the same data, including data changed out of
order (inserts before stored points, dropped ranges) between reads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tsconnector.server.model import Database
from tsconnector.server.query import Session, execute
from tsconnector.server.query import select as sel
from tsconnector.server.query.answer import PointColumns
from tsconnector.server.query.functions import ARRAY_AGGREGATES
from tsconnector.server.wire import iter_pack_answer, pack_answer

BASE = 1_000_000
ints = st.integers(-(2**40), 2**40)
floats = st.floats(allow_nan=True, allow_infinity=False, width=64)


def _answer(db: Database, query: str, arrays: bool) -> Any:
    """``execute`` with the array path on or off (off: the list path of before)."""
    saved = sel._reads_arrays
    if not arrays:
        sel._reads_arrays = lambda series, chain: False  # type: ignore[assignment]
    try:
        tp, answer = execute(Session(db, "iris"), query, None)
    finally:
        sel._reads_arrays = saved
    return tp, pack_answer(answer)  # bytes: NaN compares, types are kept


batches = st.lists(
    st.lists(st.tuples(st.integers(BASE, BASE + 400), ints), min_size=1, max_size=40),
    min_size=1, max_size=4)


@settings(max_examples=60)
@given(batches, st.booleans(), st.sampled_from(sorted(ARRAY_AGGREGATES)),
       st.sampled_from([1, 7, 60, 1000]))
def test_aggregates_over_arrays_answer_as_over_lists(
    inserts: list[list[tuple[int, int]]], as_float: bool, name: str, window: int
) -> None:
    db = Database("arrays", 0)
    for points in inserts:  # out-of-order inserts reset the mirror between reads
        db.insert({"s": [(t, float(v) / 3 if as_float else v) for t, v in points]})
        for query in (f"select {name}({window}) from \"s\"",
                      f"select {name}({window}) from \"s\" between {BASE + 50} and {BASE + 300}",
                      "select * from \"s\""):
            assert _answer(db, query, True) == _answer(db, query, False), query


def test_mirror_follows_drops_and_out_of_order_inserts() -> None:
    db = Database("mirror", 0)
    db.insert({"s": [(BASE + i, i) for i in range(1000)]})
    first = _answer(db, 'select max(10) from "s"', True)
    db.insert({"s": [(BASE - 5, 10**9), (BASE + 500, -(10**9))]})  # before the end
    second = _answer(db, 'select max(10) from "s"', True)
    assert second != first
    assert second == _answer(db, 'select max(10) from "s"', False)
    series = db.series["s"]
    series.drop_range(BASE, BASE + 100, [])
    assert _answer(db, 'select min(10) from "s"', True) == _answer(
        db, 'select min(10) from "s"', False)
    ts, values = series.arrays()
    assert ts.tolist() == series.ts
    assert values.tolist() == series.values


def test_large_select_packs_array_chunks_like_lists() -> None:
    db = Database("big", 0)
    n = 150_000
    db.insert({"f": [(BASE + i, i * 0.25 if i % 7 else math.nan) for i in range(n)],
               "i": [(BASE + i, (i % 300) - 150) for i in range(n)]})
    _tp, answer = execute(Session(db, "iris"), "select * from /.*/", None)
    assert all(type(v) is PointColumns for v in answer.values())
    pieces = list(iter_pack_answer(answer))
    expected = {name: list(points) for name, points in answer.items()}
    assert b"".join(pieces) == pack_answer(expected)
    assert answer["i"][-1] == [BASE + n - 1, (n - 1) % 300 - 150]
    assert type(answer["i"][0][0]) is int
    assert b"".join(pieces) == _answer(db, "select * from /.*/", False)[1]


def test_float_aggregates_keep_nan_and_sequence_sums() -> None:
    db = Database("nan", 0)
    values = [math.nan, 1e16, 1.0, -1e16, 3.5] * 40
    db.insert({"x": [(BASE + i, v) for i, v in enumerate(values)]})
    for name in ("mean", "sum", "min", "max", "median", "stddev"):
        query = f'select {name}(10) from "x"'
        assert _answer(db, query, True) == _answer(db, query, False), name
    arrays = db.series["x"].arrays()[1]
    assert np.isnan(arrays[0])
