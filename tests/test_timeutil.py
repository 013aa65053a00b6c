"""Exact time conversion: every precision, int64 edges, time zones, sub-unit rounding."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsconnector.timeutil import (
    INT64_MAX,
    INT64_MIN,
    NS_PER_UNIT,
    datetime64_to_db,
    from_db_time,
    parse_precision,
    precision_name,
    timedelta_to_db,
    to_datetime64,
    to_db_time,
    to_ns,
)

UTC = dt.timezone.utc
precisions = st.integers(min_value=0, max_value=3)
int64s = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
# datetimes datetime can represent, naive (= UTC) or with an offset
naive_datetimes = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30))
offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)


def test_parse_precision() -> None:
    assert [parse_precision(p) for p in ("s", "ms", "us", "ns", " MS ")] == [0, 1, 2, 3, 1]
    assert [parse_precision(p) for p in range(4)] == [0, 1, 2, 3]
    assert parse_precision(None, default=2) == 2
    assert precision_name(3) == "ns"
    with pytest.raises(ValueError, match=r"0\.\.3"):
        parse_precision(4)
    with pytest.raises(ValueError, match="unknown time precision"):
        parse_precision("m")
    with pytest.raises(TypeError):
        parse_precision(True)
    with pytest.raises(TypeError):
        parse_precision(None)


@given(ts=int64s, precision=precisions)
def test_int_round_trip_through_ns(ts: int, precision: int) -> None:
    ns = to_ns(ts, precision)
    assert ns == ts * NS_PER_UNIT[precision]
    assert to_db_time(ns, precision) == ts


@pytest.mark.parametrize("precision", range(4))
@pytest.mark.parametrize("ts", [INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX])
def test_int64_edges(ts: int, precision: int) -> None:
    assert to_db_time(to_ns(ts, precision), precision) == ts
    if ts == INT64_MIN:  # numpy's NaT
        with pytest.raises(ValueError, match="NaT"):
            to_datetime64(ts, precision)
        return
    assert to_db_time(to_datetime64(ts, precision), precision) == ts
    assert to_ns(to_datetime64(ts, precision)) == to_ns(ts, precision)


def test_outside_int64_raises() -> None:
    with pytest.raises(OverflowError):
        to_db_time((INT64_MAX + 1) * 10**9, 0)
    with pytest.raises(OverflowError):
        to_datetime64(INT64_MAX + 1, 0)
    with pytest.raises(OverflowError):
        to_db_time(dt.datetime(9999, 1, 1), 3)  # beyond int64 nanoseconds


@given(value=naive_datetimes, precision=st.integers(min_value=2, max_value=3))
def test_datetime_round_trip_exact(value: dt.datetime, precision: int) -> None:
    try:
        ts = to_db_time(value, precision)
    except OverflowError:  # ns since 1970 leave int64 outside years 1677..2262
        assert precision == 3
        assert not dt.datetime(1677, 9, 22) < value < dt.datetime(2262, 4, 11)
        return
    assert from_db_time(ts, precision) == value.replace(tzinfo=UTC)


@given(value=naive_datetimes, precision=st.integers(min_value=0, max_value=1))
def test_datetime_round_trip_coarse(value: dt.datetime, precision: int) -> None:
    unit_us = 10 ** (6 - 3 * precision)
    whole = value.replace(microsecond=value.microsecond // unit_us * unit_us)
    assert from_db_time(to_db_time(whole, precision), precision) == whole.replace(tzinfo=UTC)
    if whole != value:
        with pytest.raises(ValueError, match="rounding"):
            to_db_time(value, precision)
        floor = to_db_time(value, precision, rounding="floor")
        assert floor == to_db_time(whole, precision)
        assert to_db_time(value, precision, rounding="ceil") == floor + 1


@given(value=naive_datetimes, tz=offsets)
def test_aware_datetimes_are_converted(value: dt.datetime, tz: dt.timezone) -> None:
    aware = value.replace(tzinfo=tz)
    expected = aware.astimezone(UTC).replace(tzinfo=None) if value.year > 1 else None
    if expected is None:
        return
    assert to_db_time(aware, 2) == to_db_time(expected, 2)


def test_known_values() -> None:
    assert to_db_time(dt.datetime(2023, 11, 14), "s") == 1_699_920_000
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert to_db_time(dt.datetime(2023, 11, 14, 2, tzinfo=plus_two), 0) == 1_699_920_000
    assert to_db_time(dt.date(2023, 11, 14), "ms") == 1_699_920_000_000
    assert to_db_time(dt.datetime(1969, 12, 31, 23, 59, 59, 500000), 0, rounding="floor") == -1
    assert to_db_time(dt.datetime(1969, 12, 31, 23, 59, 59, 500000), 0, rounding="ceil") == 0
    assert from_db_time(1_699_920_000_123_456_789, 3) == dt.datetime(
        2023, 11, 14, 0, 0, 0, 123456, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        from_db_time(1_699_920_000_123_456_789, 3, rounding="exact")
    with pytest.raises(OverflowError):
        from_db_time(INT64_MAX, 0)
    assert timedelta_to_db(dt.timedelta(hours=1), "ms") == 3_600_000
    with pytest.raises(ValueError):
        timedelta_to_db(dt.timedelta(microseconds=1), 0)


@pytest.mark.parametrize(
    ("value", "precision", "expected"),
    [
        (np.datetime64("2023-11-14T00:00:00", "s"), 1, 1_699_920_000_000),
        (np.datetime64("2023-11-14", "D"), 0, 1_699_920_000),
        (np.datetime64("2023-11", "M"), 0, 1_698_796_800),
        (np.datetime64("2023", "Y"), 0, 1_672_531_200),
        (np.datetime64(1_699_920_000_123_456_789, "ns"), 3, 1_699_920_000_123_456_789),
        (np.datetime64(5, "ps"), 3, None),
    ],
)
def test_datetime64_scalars(value: np.datetime64, precision: int, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            to_db_time(value, precision)
        assert to_db_time(value, precision, rounding="ceil") == 1
        assert to_db_time(value, precision, rounding="floor") == 0
    else:
        assert to_db_time(value, precision) == expected
    with pytest.raises(ValueError, match="NaT"):
        to_db_time(np.datetime64("NaT", "ns"), precision)


@given(
    values=st.lists(st.integers(min_value=-(10**17), max_value=10**17), min_size=1, max_size=20),
    unit=st.sampled_from(["s", "ms", "us", "ns", "m", "h", "D"]),
    precision=precisions,
    rounding=st.sampled_from(["ceil", "floor"]),
)
def test_datetime64_arrays_match_scalars(
    values: list[int], unit: str, precision: int, rounding: str
) -> None:
    arr = np.array(values, dtype=f"datetime64[{unit}]")
    try:
        expected = [to_db_time(v, precision, rounding=rounding) for v in arr]  # type: ignore[arg-type]
    except OverflowError:
        with pytest.raises(OverflowError):
            datetime64_to_db(arr, precision, rounding=rounding)  # type: ignore[arg-type]
        return
    got = datetime64_to_db(arr, precision, rounding=rounding)  # type: ignore[arg-type]
    assert got.dtype == np.int64
    assert got.tolist() == expected


def test_datetime64_array_errors_and_copy() -> None:
    arr = np.array([0, 1500], dtype="datetime64[ms]")
    with pytest.raises(ValueError, match="whole number"):
        datetime64_to_db(arr, 0)
    with pytest.raises(ValueError, match="NaT"):
        datetime64_to_db(np.array(["NaT"], dtype="datetime64[s]"), 0)
    with pytest.raises(TypeError):
        datetime64_to_db(np.array([1, 2]), 0)
    same = np.array([1, 2], dtype="datetime64[s]")
    out = datetime64_to_db(same, 0)
    out[0] = 99
    assert same.view(np.int64)[0] == 1  # a copy, never a view of the input


def test_type_errors() -> None:
    with pytest.raises(TypeError):
        to_db_time("2023-11-14", 0)
    with pytest.raises(TypeError):
        to_db_time(True, 0)
    with pytest.raises(TypeError):
        to_ns(1)  # an int needs its precision
    with pytest.raises(ValueError):
        to_db_time(dt.datetime(2023, 1, 1), 0, rounding="nearest")  # type: ignore[arg-type]
