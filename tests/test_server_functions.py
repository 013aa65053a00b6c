"""Tests for tsconnector.server.query.functions: golden SiriDB answers and property tests."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsconnector.server.query.functions import (
    FunctionCall,
    FunctionError,
    apply_function,
    compile_filter_regex,
    fast_first_string,
    fast_last_string,
    merge_points,
    merge_series,
    read_string_chunk,
    validate_call,
)

H = 3600
CASES_PATH = Path(__file__).parent / "data" / "cases.json"
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


# --------------------------------------------------------------------------- replay


class Series:
    """A replayed series: sorted points, its type and the points of each insert."""

    def __init__(self, tp: str) -> None:
        self.tp = tp
        self.points: list[tuple[int, Any]] = []
        self.chunks: list[list[tuple[int, Any]]] = []

    def convert(self, value: Any) -> Any:
        if self.tp == "integer":
            if isinstance(value, str):
                m = re.match(r"\s*[+-]?\d+", value)
                return int(m.group()) if m else 0
            return int(value)
        if self.tp == "float":
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    return 0.0
            return float(value)
        if isinstance(value, float):
            return f"{value:f}"
        return str(value)

    def add(self, points: list) -> None:
        chunk = [(int(t), self.convert(v)) for t, v in points]
        self.chunks.append(chunk)
        self.points.extend(chunk)
        self.points.sort(key=lambda p: p[0])  # stable: duplicates stay in insert order

    def select(self, after: int | None = None, before: int | None = None) -> tuple[list[int], list]:
        pts = [
            p
            for p in self.points
            if (after is None or p[0] >= after) and (before is None or p[0] < before)
        ]
        return [p[0] for p in pts], [p[1] for p in pts]


def _value_type(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    return "float" if isinstance(value, float) else "integer"


def _load() -> tuple[dict[str, Series], dict[str, dict]]:
    data = json.loads(CASES_PATH.read_text())
    cases = sorted(data["cases"], key=lambda c: c["seq"])
    db: dict[str, Series] = {}
    by_id: dict[str, dict] = {}
    for case in cases:
        by_id[case["id"]] = case
        if case["kind"] != "insert" or case["db"] != "dbtest" or case.get("error"):
            continue
        if case["seq"] > 200:
            continue
        payload = eval(case["request_repr"], {"inf": math.inf, "nan": math.nan})
        items = (
            [(item["name"], item["points"]) for item in payload]
            if isinstance(payload, list)
            else list(payload.items())
        )
        for name, points in items:
            if name not in db:
                db[name] = Series(_value_type(points[0][1]))
            db[name].add(list(points))
    return db, by_id


DB, CASES = _load()


def golden(case_id: str) -> dict:
    return CASES[case_id]["response"]


def chain(
    name: str,
    calls: list[FunctionCall],
    after: int | None = None,
    before: int | None = None,
) -> list[list]:
    series = DB[name]
    ts, values = series.select(after, before)
    tp = series.tp
    for call in calls:
        ts, values, tp = apply_function(call, ts, values, tp)
    return [[t, v] for t, v in zip(ts, values)]


def exact(points: list[list]) -> list:
    """Make values comparable bit for bit, including int versus float."""
    out = []
    for t, v in points:
        assert type(t) is int
        if isinstance(v, float):
            out.append((t, "float", v.hex()))
        else:
            out.append((t, type(v).__name__, v))
    return out


def F(name: str, **kw: Any) -> FunctionCall:
    return FunctionCall(name, **kw)


# --------------------------------------------------------------------------- goldens

GOLDEN_CHAINS: list[tuple[str, str, list[FunctionCall], dict]] = [
    ("agg_count_6h", "aggr", [F("count", window=6 * H)], {}),
    ("agg_sum_all", "aggr", [F("sum")], {}),
    ("agg_mean_6h", "aggr", [F("mean", window=6 * H)], {}),
    ("agg_median_all", "aggr", [F("median")], {}),
    ("agg_median_6h", "aggr", [F("median", window=6 * H)], {}),
    ("agg_median_low_all", "aggr", [F("median_low")], {}),
    ("agg_median_low_6h", "aggr", [F("median_low", window=6 * H)], {}),
    ("agg_median_high_all", "aggr", [F("median_high")], {}),
    ("agg_min_all", "aggr", [F("min")], {}),
    ("agg_first_all", "aggr", [F("first")], {}),
    ("agg_last_all", "aggr", [F("last")], {}),
    ("agg_last_6h", "aggr", [F("last", window=6 * H)], {}),
    ("agg_stddev_all", "aggr", [F("stddev")], {}),
    ("agg_stddev_6h", "aggr", [F("stddev", window=6 * H)], {}),
    ("agg_variance_all", "aggr", [F("variance")], {}),
    ("agg_pvariance_6h", "aggr", [F("pvariance", window=6 * H)], {}),
    ("agg_mean_1h", "aggr", [F("mean", window=H)], {}),
    ("agg_mean_1d", "aggr", [F("mean", window=24 * H)], {}),
    ("agg_count_1h_float", "float-series", [F("count", window=H)], {}),
    ("agg_mean_float", "float-series", [F("mean")], {}),
    ("agg_difference", "aggr", [F("difference")], {"before": 1699934400}),
    ("agg_derivative", "aggr", [F("derivative")], {"before": 1699934400}),
    ("agg_derivative_1h", "aggr", [F("derivative", interval=H)], {"before": 1699934400}),
    ("agg_derivative_1h_6h", "aggr", [F("derivative", interval=H, window=6 * H)], {}),
    ("agg_limit_mean", "aggr", [F("limit", limit=4, inner="mean")], {}),
    ("agg_limit_max", "int-series", [F("limit", limit=5, inner="max")], {}),
    ("agg_filter_gt", "aggr", [F("filter", operator=">", operand=10)], {}),
    ("agg_filter_eq", "aggr", [F("filter", operator="==", operand=3)], {}),
    ("agg_filter_default_eq", "aggr", [F("filter", operand=3)], {}),
    ("agg_filter_ne", "sensor.a", [F("filter", operator="!=", operand=0)], {}),
    (
        "agg_filter_str_regex_default",
        "str-series",
        [F("filter", operand=compile_filter_regex("/^[ab]/"))],
        {},
    ),
    (
        "agg_filter_str_regex_ne",
        "str-series",
        [F("filter", operator="!=", operand=compile_filter_regex("/^[ab]/"))],
        {},
    ),
    ("agg_filter_str_eq", "str-series", [F("filter", operator="==", operand="gamma")], {}),
    ("agg_filter_float", "float-series", [F("filter", operator=">=", operand=2.5)], {}),
    ("agg_timeval", "sensor.a", [F("timeval")], {}),
    ("agg_chain_mean_difference", "aggr", [F("mean", window=6 * H), F("difference")], {}),
    ("agg_chain_filter_count", "aggr", [F("filter", operator=">", operand=5), F("count")], {}),
    (
        "agg_chain_three",
        "aggr",
        [F("max", window=H), F("mean", window=6 * H), F("filter", operator=">", operand=8)],
        {},
    ),
    ("agg_count_str", "str-series", [F("count")], {}),
    ("agg_last_str", "str-series", [F("last")], {}),
    ("agg_first_1h_str", "str-series", [F("first", window=H)], {}),
    ("agg_count_empty_range", "aggr", [F("count")], {"before": 10}),
    ("agg_stddev_single_point", "one", [F("stddev")], {}),
    ("agg_sum_bigint", "bigint", [F("sum")], {}),
]


@pytest.mark.parametrize(
    ("case_id", "series", "calls", "rng"), GOLDEN_CHAINS, ids=[g[0] for g in GOLDEN_CHAINS]
)
def test_golden_chain(case_id: str, series: str, calls: list, rng: dict) -> None:
    expected = golden(case_id)
    assert list(expected) == [series]
    assert exact(chain(series, calls, **rng)) == exact(expected[series])


def test_golden_mean_1h_in_ms_precision() -> None:
    # the query layer multiplies timestamps by 1000 afterwards (time_precision=1)
    got = chain("aggr", [F("mean", window=H)], before=1699934400)
    expected = golden("tp_s_db_mean_tp1")["aggr"]
    assert exact([[t * 1000, v] for t, v in got]) == exact(expected)


def test_golden_count_star() -> None:
    expected = golden("agg_count_star_all")
    for name, points in expected.items():
        assert exact(chain(name, [F("count")], before=1800000000)) == exact(points), name


def test_golden_first_last_with_prefix() -> None:
    expected = golden("agg_first_last_str")
    assert exact(chain("str-series", [F("last")])) == exact(expected["l-str-series"])


def test_golden_first_string_quirk() -> None:
    """select first() without range reads only the first stored chunk (compressed)."""
    series = DB["str-series"]
    first_chunk = series.chunks[0]
    ts, value = fast_first_string(
        [p[0] for p in first_chunk], [p[1] for p in first_chunk], series.points[0][0]
    )
    assert [[ts, value]] == golden("agg_first_str")["str-series"]
    assert [[ts, value]] == golden("agg_first_last_str")["str-series"]
    # the normal path (with a window or a range) gives the real first string
    assert chain("str-series", [F("first")]) == [[1699920000, "alpha"]]


def test_golden_last_string_fast_path() -> None:
    series = DB["str-series"]
    last_chunk = series.chunks[-1]
    got = fast_last_string(
        [p[0] for p in last_chunk], [p[1] for p in last_chunk], series.points[-1][0]
    )
    assert [list(got)] == golden("agg_last_str")["str-series"]


def test_golden_merge_plain() -> None:
    parts = [DB[name].select() for name in ("sensor.a", "sensor.b", "sensor.c")]
    ts, values = merge_points(parts)
    expected = golden("agg_merge_plain")["merged"]
    assert exact([[t, v] for t, v in zip(ts, values)]) == exact(expected)


def test_golden_merge_using_sum() -> None:
    parts = [(*DB[n].select(), DB[n].tp) for n in ("sensor.a", "sensor.b", "sensor.c")]
    ts, values, tp = merge_series(parts)
    assert tp == "float"
    ts, values, tp = apply_function(F("sum", window=H), ts, values, tp)
    expected = golden("agg_merge_sum_1h")["total"]
    assert exact([[t, v] for t, v in zip(ts, values)]) == exact(expected)


def test_golden_merge_after_aggregate() -> None:
    parts = []
    for name in ("sensor.a", "sensor.b", "sensor.c"):
        ts, values = DB[name].select()
        parts.append(apply_function(F("max", window=H), ts, values, DB[name].tp))
    ts, values, tp = merge_series(parts)
    ts, values, tp = apply_function(F("max", window=H), ts, values, tp)
    expected = golden("agg_merge_after_aggr")["m"]
    assert exact([[t, v] for t, v in zip(ts, values)]) == exact(expected)


@pytest.mark.parametrize(
    ("case_id", "series", "call"),
    [
        ("err_q_derivative_string", "str-series", F("derivative")),
        ("err_q_sum_string", "str-series", F("sum", window=H)),
        ("err_q_limit_zero", "aggr", F("limit", limit=0, inner="mean")),
    ],
)
def test_golden_errors(case_id: str, series: str, call: FunctionCall) -> None:
    ts, values = DB[series].select()
    with pytest.raises(FunctionError) as info:
        apply_function(call, ts, values, DB[series].tp)
    assert str(info.value) == CASES[case_id]["error"]["message"]


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    "name",
    [
        "sum",
        "mean",
        "median",
        "median_low",
        "median_high",
        "min",
        "max",
        "stddev",
        "variance",
        "pvariance",
        "difference",
        "derivative",
    ],
)
def test_string_type_errors(name: str) -> None:
    with pytest.raises(FunctionError, match=rf"^Cannot use {name}\(\) on string type\.$"):
        apply_function(F(name), [1, 2], ["a", "b"], "string")
    with pytest.raises(FunctionError, match=rf"^Cannot use {name}\(\) on string type\.$"):
        apply_function(F(name, window=10, interval=1), [1, 2], ["a", "b"], "string")


def test_string_functions_allowed() -> None:
    ts, vals = [1, 5, 12], ["x", "y", "z"]
    assert apply_function(F("count"), ts, vals, "string") == ([12], [3], "integer")
    assert apply_function(F("last", window=10), ts, vals, "string") == (
        [5, 12],
        ["y", "z"],
        "string",
    )
    assert apply_function(F("timeval"), ts, vals, "string") == (ts, ts, "integer")
    assert apply_function(F("interval"), ts, vals, "string") == ([5, 12], [4, 7], "integer")


def test_empty_input_passes_through() -> None:
    assert apply_function(F("sum"), [], [], "string") == ([], [], "string")
    assert apply_function(F("count", window=5), [], [], "float") == ([], [], "float")
    with pytest.raises(FunctionError, match="Limit must be"):
        apply_function(F("limit", limit=0, inner="max"), [], [], "integer")


def test_static_errors() -> None:
    with pytest.raises(FunctionError) as info:
        validate_call(F("filter", operator="~", operand=3))
    assert str(info.value) == "Operator '~' can only be used with strings."
    with pytest.raises(FunctionError) as info:
        validate_call(F("filter", operator="!~", operand=3.5))
    assert str(info.value) == "Operator '!~' can only be used with strings."
    with pytest.raises(FunctionError) as info:
        validate_call(F("filter", operator=">", operand=compile_filter_regex("/a/")))
    assert str(info.value) == (
        "Regular expressions can only be used with 'equal' (==) or 'not equal' (!=) operator."
    )
    with pytest.raises(FunctionError) as info:
        validate_call(F("mean", window=0))
    assert str(info.value) == "Group by time must be an integer value larger than zero."
    with pytest.raises(FunctionError) as info:
        validate_call(F("derivative", interval=0))
    assert str(info.value) == "Time-span must be an integer value larger than zero."


def test_filter_type_mismatch() -> None:
    with pytest.raises(FunctionError, match=r"^Cannot use a number filter on string type\.$"):
        apply_function(F("filter", operand=1), [1], ["a"], "string")
    with pytest.raises(FunctionError, match=r"^Cannot use a string filter on number type\.$"):
        apply_function(F("filter", operand="a"), [1], [1], "integer")


def test_filter_contains_and_float_operand_truncation() -> None:
    ts, vals = [1, 2, 3], ["error x", "fine", "an error"]
    assert apply_function(F("filter", operator="~", operand="error"), ts, vals, "string")[1] == [
        "error x",
        "an error",
    ]
    assert apply_function(F("filter", operator="!~", operand="error"), ts, vals, "string")[1] == [
        "fine"
    ]
    # 2.9 is truncated to 2 for an integer series
    assert apply_function(F("filter", operator="==", operand=2.9), [1, 2], [2, 3], "integer")[
        1
    ] == [2]
    # an integer operand is promoted for a float series
    assert apply_function(F("filter", operator="<", operand=2), [1, 2], [1.5, 2.0], "float")[1] == [
        1.5
    ]


def test_regex_literal_is_anchored() -> None:
    assert compile_filter_regex("/^[ab]/").pattern.pattern == "^^[ab]$"
    ts, vals = [1, 2, 3], ["a", "alpha", "B"]
    out = apply_function(F("filter", operand=compile_filter_regex("/[ab].*/i")), ts, vals, "string")
    assert out[1] == ["a", "alpha", "B"]
    assert apply_function(F("filter", operand=compile_filter_regex("/^[ab]/")), ts, vals, "string")[
        1
    ] == ["a"]


def test_sum_overflow_and_difference_overflow() -> None:
    with pytest.raises(FunctionError, match=r"^Overflow detected while using sum\(\)\.$"):
        apply_function(F("sum"), [1, 2, 3], [INT64_MAX, 1, -1], "integer")
    assert apply_function(F("sum"), [1, 2, 3], [INT64_MAX, INT64_MIN, 0], "integer")[1] == [-1]
    with pytest.raises(FunctionError, match=r"^Overflow detected while using difference\(\)\.$"):
        apply_function(F("difference"), [1, 2], [INT64_MIN, 1], "integer")
    with pytest.raises(FunctionError, match=r"difference"):
        apply_function(F("difference", window=10), [1, 2], [INT64_MIN, 1], "integer")


def test_median_types_and_int_quirks() -> None:
    ts = [1, 2, 3, 4]
    assert apply_function(F("median"), ts, [4, 1, 3, 2], "integer")[1:] == ([2.5], "float")
    assert apply_function(F("median_low"), ts, [4, 1, 3, 2], "integer")[1:] == ([2], "integer")
    assert apply_function(F("median_high"), ts, [4, 1, 3, 2], "integer")[1:] == ([3], "integer")
    assert apply_function(F("median"), ts[:3], [4, 1, 3], "integer")[1] == [3.0]
    # the two middle integers are added in int64 (wrapping) before halving
    big = [INT64_MAX, INT64_MAX]
    assert apply_function(F("median"), [1, 2], big, "integer")[1] == [-1.0]
    # the selected integer passes through a double
    assert apply_function(F("median_low"), [1, 2], [2**53 + 1, 2**60], "integer")[1] == [2**53]
    assert apply_function(F("median_low"), [1], [2**53 + 1], "integer")[1] == [2**53 + 1]


def test_no_window_timestamps() -> None:
    ts = [10, 20, 30]
    assert apply_function(F("first"), ts, [1, 2, 3], "integer") == ([10], [1], "integer")
    for name in ("last", "sum", "mean", "count", "max", "stddev"):
        assert apply_function(F(name), ts, [1, 2, 3], "integer")[0] == [30]


def test_derivative_zero_time_difference() -> None:
    out = apply_function(F("derivative"), [5, 5, 5], [1, 2, 2], "integer")
    assert out[1][0] == math.inf
    assert math.isnan(out[1][1])


def test_limit_passes_through_short_series() -> None:
    ts, vals = [1, 2, 3], [1.5, 2.5, 3.5]
    assert apply_function(F("limit", limit=3, inner="count"), ts, vals, "float") == (
        ts,
        vals,
        "float",
    )
    out = apply_function(F("limit", limit=2, inner="count"), ts, vals, "float")
    assert out[2] == "integer"
    assert sum(out[1]) == 3


def test_float_sum_is_sequential() -> None:
    vals = [1e16, 1.0, -1e16, 1.0] * 300
    ts = list(range(len(vals)))
    expected = 0.0
    for v in vals:
        expected += v
    got = apply_function(F("sum"), ts, vals, "float")[1][0]
    assert got.hex() == expected.hex()
    windowed = apply_function(F("sum", window=7), ts, vals, "float")[1]
    buckets: dict[int, float] = {}
    for t, v in zip(ts, vals):
        label = -(-t // 7) * 7
        buckets[label] = buckets.get(label, 0.0) + v
    ref = list(buckets.values())
    assert [x.hex() for x in windowed] == [x.hex() for x in ref]


def test_sum_of_negative_zero() -> None:
    assert math.copysign(1.0, apply_function(F("sum"), [1], [-0.0], "float")[1][0]) == 1.0


def test_merge_rules() -> None:
    with pytest.raises(FunctionError, match=r"^Cannot merge string and number series\.$"):
        merge_points([([1], [1]), ([1], ["a"])])
    # empty parts are dropped, one remaining part is returned as it is
    assert merge_series([([], [], "float"), ([1, 2], [3, 4], "integer")]) == (
        [1, 2],
        [3, 4],
        "integer",
    )
    assert merge_series([([], [], "float"), ([], [], "integer")]) == ([], [], "integer")
    # ties: the first part's point comes last, exhausted parts swap in the last part
    ts, vals = merge_points([([5], ["a"]), ([5], ["b"]), ([5], ["c"])])
    assert vals == ["b", "c", "a"]
    ts, vals = merge_points([([1, 5], ["a1", "a5"]), ([5], ["b"]), ([5], ["c"])])
    assert vals == ["a1", "c", "b", "a5"]
    # four or more parts: round robin from the back then a stable sort
    parts = [([5], [f"p{i}"]) for i in range(5)]
    ts, vals = merge_points(parts)
    assert ts == [5] * 5
    assert sorted(vals) == [f"p{i}" for i in range(5)]


def test_read_string_chunk_quirk() -> None:
    ts = [10, 20, 30, 40, 50]
    vals = ["a", "b", "c", "d", "e"]
    assert read_string_chunk(ts, vals) == (ts, vals)
    # cutting the end shifts the values by the number of strings cut off
    assert read_string_chunk(ts, vals, end=35) == ([10, 20, 30], ["c", "d", "e"])
    # cutting the start does not skip any string
    assert read_string_chunk(ts, vals, start=35) == ([40, 50], ["a", "b"])
    # small chunks are stored raw and read correctly
    assert read_string_chunk(ts[:4], vals[:4], start=15, end=35) == ([20, 30], ["b", "c"])
    assert fast_last_string(ts, vals, 50) == (50, "a")


# --------------------------------------------------------------------------- performance


@pytest.mark.slow
def test_mean_over_one_million_points_matches_numpy() -> None:
    # Speed is measured in benchmarks/bench_server.py; here the large path must be exact.
    n = 1_000_000
    ts = list(range(1_699_920_000, 1_699_920_000 + n))
    vals = np.random.default_rng(1).normal(size=n).tolist()
    out_ts, out_vals, tp = apply_function(F("mean", window=H), ts, vals, "float")
    assert tp == "float"
    assert len(out_ts) == math.ceil(n / H) + 1
    arr_ts, arr_vals = np.array(ts), np.array(vals)
    buckets = -(-arr_ts // H) * H
    for label, got in zip(out_ts[:5], out_vals[:5]):
        assert got == pytest.approx(arr_vals[buckets == label].mean(), rel=1e-12)
    every, _, _ = apply_function(F("mean", window=1), ts, vals, "float")
    assert every == ts
    (_, (stddev,), _) = apply_function(F("stddev"), ts, vals, "float")
    assert stddev == pytest.approx(float(np.std(arr_vals, ddof=1)), rel=1e-9)


# --------------------------------------------------------------------------- properties

ts_values = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(-(10**12), 10**12)), min_size=1, max_size=60
).map(lambda pts: sorted(pts, key=lambda p: p[0]))
float_values = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e9, max_value=1e9),
    ),
    min_size=1,
    max_size=60,
).map(lambda pts: sorted(pts, key=lambda p: p[0]))


def ref_buckets(points: list[tuple[int, Any]], window: int) -> dict[int, list]:
    buckets: dict[int, list] = {}
    for t, v in points:
        buckets.setdefault(-(-t // window) * window, []).append(v)
    return buckets


def seq_sum(vals: list[float]) -> float:
    total = 0.0
    for v in vals:
        total += v
    return total


@settings(max_examples=150, deadline=None)
@given(points=ts_values, window=st.integers(1, 3000))
def test_property_int_windows(points: list[tuple[int, int]], window: int) -> None:
    ts = [p[0] for p in points]
    vals = [p[1] for p in points]
    buckets = ref_buckets(points, window)
    labels = list(buckets)
    assert apply_function(F("count", window=window), ts, vals, "integer") == (
        labels,
        [len(b) for b in buckets.values()],
        "integer",
    )
    assert apply_function(F("sum", window=window), ts, vals, "integer") == (
        labels,
        [sum(b) for b in buckets.values()],
        "integer",
    )
    assert apply_function(F("min", window=window), ts, vals, "integer")[1] == [
        min(b) for b in buckets.values()
    ]
    assert apply_function(F("max", window=window), ts, vals, "integer")[1] == [
        max(b) for b in buckets.values()
    ]
    means = apply_function(F("mean", window=window), ts, vals, "integer")
    assert means[2] == "float"
    assert [m.hex() for m in means[1]] == [
        (seq_sum([float(v) for v in b]) / len(b)).hex() for b in buckets.values()
    ]


@settings(max_examples=150, deadline=None)
@given(points=float_values, window=st.integers(1, 3000))
def test_property_float_windows(points: list[tuple[int, float]], window: int) -> None:
    ts = [p[0] for p in points]
    vals = [p[1] for p in points]
    buckets = ref_buckets(points, window)
    got_sum = apply_function(F("sum", window=window), ts, vals, "float")[1]
    assert [x.hex() for x in got_sum] == [seq_sum(b).hex() for b in buckets.values()]
    got_mean = apply_function(F("mean", window=window), ts, vals, "float")[1]
    assert [x.hex() for x in got_mean] == [(seq_sum(b) / len(b)).hex() for b in buckets.values()]
    got_pvar = apply_function(F("pvariance", window=window), ts, vals, "float")[1]
    ref_pvar = []
    for b in buckets.values():
        mean = seq_sum(b) / len(b)
        ref_pvar.append(seq_sum([(v - mean) * (v - mean) for v in b]) / len(b))
    assert [x.hex() for x in got_pvar] == [x.hex() for x in ref_pvar]
    assert apply_function(F("max", window=window), ts, vals, "float")[1] == [
        max(b) for b in buckets.values()
    ]


@settings(max_examples=150, deadline=None)
@given(
    points=ts_values,
    opr=st.sampled_from(["==", "!=", "<", ">", "<=", ">="]),
    operand=st.integers(-(10**12), 10**12),
)
def test_property_filter(points: list[tuple[int, int]], opr: str, operand: int) -> None:
    ts = [p[0] for p in points]
    vals = [p[1] for p in points]
    ops = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
    }
    keep = [(t, v) for t, v in points if ops[opr](v, operand)]
    assert apply_function(F("filter", operator=opr, operand=operand), ts, vals, "integer") == (
        [k[0] for k in keep],
        [k[1] for k in keep],
        "integer",
    )


@settings(max_examples=150, deadline=None)
@given(points=ts_values)
def test_property_difference(points: list[tuple[int, int]]) -> None:
    ts = [p[0] for p in points]
    vals = [p[1] for p in points]
    assert apply_function(F("difference"), ts, vals, "integer") == (
        ts[1:],
        [b - a for a, b in itertools.pairwise(vals)],
        "integer",
    )
    fvals = [float(v) for v in vals]
    got = apply_function(F("difference"), ts, fvals, "float")
    assert got[1] == [b - a for a, b in itertools.pairwise(fvals)]


@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(
        st.lists(st.integers(0, 20), min_size=0, max_size=8).map(sorted), min_size=1, max_size=6
    )
)
def test_property_merge_is_sorted_permutation(parts: list[list[int]]) -> None:
    tagged = [(t, [(i, j) for j in range(len(t))]) for i, t in enumerate(parts)]
    ts, vals = merge_points([(t, [f"{i}:{j}" for i, j in v]) for t, v in tagged])
    assert ts == sorted(x for t in parts for x in t)
    assert sorted(vals) == sorted(f"{i}:{j}" for t, v in tagged for i, j in v)
    # points of one series keep their order
    for i in range(len(parts)):
        mine = [v for v in vals if v.startswith(f"{i}:")]
        assert mine == [f"{i}:{j}" for j in range(len(parts[i]))]


def naive_sort_while_merge(parts: list[tuple[list[int], list]]) -> list:
    """Point by point transcription of SiriDB's merge for fewer than four series."""
    plist = [[t, v, len(t) - 1] for t, v in parts]
    i = 0
    while i < len(plist):  # empty series are replaced by the last one of the list
        if not plist[i][0]:
            last = plist.pop()
            if i < len(plist):
                plist[i] = last
            continue
        i += 1
    out: list = []
    while plist:
        m = 0
        for i in range(1, len(plist)):
            if plist[i][0][plist[i][2]] > plist[m][0][plist[m][2]]:
                m = i
        item = plist[m]
        out.append((item[0][item[2]], item[1][item[2]]))
        item[2] -= 1
        if item[2] < 0:
            last = plist.pop()
            if m < len(plist):
                plist[m] = last
    return out[::-1]


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.lists(st.integers(0, 6), min_size=0, max_size=7).map(sorted), min_size=2, max_size=3
    )
)
def test_property_merge_matches_siridb_order(parts: list[list[int]]) -> None:
    series = [(t, [f"{i}:{j}" for j in range(len(t))]) for i, t in enumerate(parts)]
    ts, vals = merge_points(series)
    expected = naive_sort_while_merge(series)
    assert list(zip(ts, vals)) == expected


@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(
        st.lists(st.integers(0, 9), min_size=1, max_size=8).map(sorted), min_size=4, max_size=7
    )
)
def test_property_merge_many_series_variant(parts: list[list[int]]) -> None:
    from tsconnector.server.query.functions import _merge_highest

    series = [(t, [f"{i}:{j}" for j in range(len(t))]) for i, t in enumerate(parts)]
    ts, vals = _merge_highest([(list(t), list(v)) for t, v in series])
    assert sorted(ts) == sorted(x for t in parts for x in t)
    for i in range(len(parts)):
        assert [v for v in vals if v.startswith(f"{i}:")] == [
            f"{i}:{j}" for j in range(len(parts[i]))
        ]


def test_merge_many_series_keeps_siridb_stale_cursor_quirk() -> None:
    """SiriDB's merge for >= 4 series and >= 250000 points starts with a stale 'highest'
    of 0; when the first series holds the highest timestamp the output is not sorted."""
    from tsconnector.server.query.functions import _merge_highest

    parts = [([1], ["a"]), ([0], ["b"]), ([0], ["c"]), ([1], ["d"])]
    assert _merge_highest(parts) == ([1, 0, 0, 1], ["d", "c", "b", "a"])
    parts = [([0, 2], ["a0", "a2"]), ([3], ["b"]), ([1], ["c"]), ([2], ["d"])]
    assert _merge_highest(parts)[0] == [0, 1, 2, 2, 3]
