"""Series answers as arrays, DataFrames and Series objects."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import qpack

from tsconnector.results import Series, series, to_arrays, to_dataframe

T0 = 1_699_920_000
ANSWER = {
    "floats": [[T0, 0.5], [T0 + 1, -1.0], [T0 + 2, float("nan")]],
    "ints": [[T0, 1], [T0 + 5, -(2**63)]],
    "mixed": [[T0, 1], [T0 + 1, 2.5]],
    "text": [[T0, "a"], [T0 + 1, ""]],
    "empty": [],
}


@pytest.mark.parametrize("form", ["dict", "bytes", "bytearray"])
def test_to_arrays_dtypes(form: str) -> None:
    answer = {
        "dict": ANSWER,
        "bytes": qpack.packb(ANSWER),
        "bytearray": bytearray(qpack.packb(ANSWER)),
    }[form]
    arrays = to_arrays(answer)  # type: ignore[arg-type]
    assert list(arrays) == list(ANSWER)
    for name, points in ANSWER.items():
        ts, _ = arrays[name]
        assert ts.dtype == np.int64
        assert ts.tolist() == [p[0] for p in points]
    assert arrays["floats"][1].dtype == np.float64
    assert np.isnan(arrays["floats"][1][2])
    assert arrays["ints"][1].dtype == np.int64
    assert arrays["ints"][1].tolist() == [1, -(2**63)]
    assert arrays["mixed"][1].dtype == np.float64
    assert arrays["text"][1].dtype == object
    assert arrays["text"][1].tolist() == ["a", ""]
    assert arrays["empty"][0].size == 0


def test_to_arrays_rejects_other_answers() -> None:
    with pytest.raises(ValueError, match="not a series answer"):
        to_arrays({"success_msg": "done"})
    with pytest.raises(TypeError):
        to_arrays([1, 2])  # type: ignore[arg-type]


def test_wide_dataframe() -> None:
    answer = {"a": [[T0, 1.5], [T0 + 1, 2.5]], "b": [[T0, 1], [T0 + 2, 3]]}
    frame = to_dataframe(answer, precision="s")
    assert list(frame.columns) == ["a", "b"]
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp(dt.datetime(2023, 11, 14, tzinfo=dt.timezone.utc))
    assert frame["a"].iloc[1] == 2.5
    assert np.isnan(frame["b"].iloc[1])
    plain = to_dataframe(qpack.packb(answer))
    assert plain.index.tolist() == [T0, T0 + 1, T0 + 2]
    with pytest.raises(ValueError, match="duplicate"):
        to_dataframe({"d": [[T0, 1], [T0, 2]]})
    assert to_dataframe({}).empty


@pytest.mark.parametrize("precision", ["s", "ms", "us", "ns"])
def test_datetime_index_is_exact(precision: str) -> None:
    big = 2**62 + 12345  # beyond datetime64[ns] for seconds: the unit is kept instead
    ts = big if precision == "ns" else 1_699_920_000_123
    frame = to_dataframe({"x": [[ts, 1.0]]}, precision=precision)
    assert frame.index.unit == precision
    assert int(frame.index.asi8[0]) == ts


def test_long_dataframe() -> None:
    answer = {"a": [[T0, 1.5]], "t": [[T0, "x"], [T0, "y"]]}
    frame = to_dataframe(answer, layout="long", precision=0)
    assert list(frame.columns) == ["series", "time", "value"]
    assert frame["series"].tolist() == ["a", "t", "t"]
    assert frame["value"].tolist() == [1.5, "x", "y"]
    assert frame["time"].iloc[0] == pd.Timestamp(T0, unit="s", tz="UTC")
    with pytest.raises(ValueError):
        to_dataframe(answer, layout="diagonal")  # type: ignore[arg-type]


def test_series_objects() -> None:
    items = series(qpack.packb({"a": [[T0, 1], [T0 + 1, 2]], "b": []}))
    assert [s.name for s in items] == ["a", "b"]
    first = items[0]
    assert first.points == [(T0, 1), (T0 + 1, 2)]
    assert list(first) == first.points
    assert len(first) == 2
    assert first.timestamps == [T0, T0 + 1]
    assert first.values == [1, 2]
    assert first.datetimes(0)[1] == dt.datetime(2023, 11, 14, 0, 0, 1, tzinfo=dt.timezone.utc)
    ts, values = first.to_arrays()
    assert ts.tolist() == [T0, T0 + 1]
    assert values.dtype == np.int64
    assert Series("x").points == []
