"""The insert packer: its bytes decode, with any qpack decoder, to the data qpack packs."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import qpack
from hypothesis import given, settings
from hypothesis import strategies as st

from tsconnector.protocol.packer import pack_insert, pack_insert_buffer
from tsconnector.timeutil import INT64_MAX, INT64_MIN

int64s = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
floats = st.floats(allow_nan=True, allow_infinity=True)
names = st.text(max_size=120)


def decode(data: bytes | bytearray | memoryview) -> Any:
    return qpack.unpackb(bytes(data), decode="utf-8")


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN and the sign of a float zero matters not."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def as_lists(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[list[Any]]]:
    return {n: [list(p) for p in zip(ts.tolist(), vs.tolist())] for n, (ts, vs) in data.items()}


# --- lists --------------------------------------------------------------------------------

list_points = st.lists(st.tuples(int64s, st.one_of(int64s, floats, st.text(max_size=30))))


@given(data=st.dictionaries(names, list_points, max_size=8))
def test_lists_decode_like_qpack(data: dict[str, list[tuple[int, Any]]]) -> None:
    expected = decode(qpack.packb(data))
    assert same(decode(pack_insert(data)), expected)
    assert same(decode(pack_insert(data, validate=True)), expected)
    assert same(decode(pack_insert_buffer(data)), expected)


def test_list_form_and_passthrough() -> None:
    data = [{"name": "a", "points": [[1, 2.5]]}, {"points": [[3, "x"]], "name": "b"}]
    assert decode(pack_insert(data)) == qpack.unpackb(qpack.packb(data), decode="utf-8")
    # odd shapes reach the server unchanged, which answers with its own error
    for odd in ({"x": [[1, 2, 3]]}, {"x": 5}, "text", [1, 2], {}, []):
        assert pack_insert(odd) == qpack.packb(odd)


# --- numpy --------------------------------------------------------------------------------

float_arrays = st.integers(min_value=0, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(int64s, min_size=n, max_size=n), st.lists(floats, min_size=n, max_size=n)
    )
)
int_arrays = st.integers(min_value=0, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(int64s, min_size=n, max_size=n), st.lists(int64s, min_size=n, max_size=n)
    )
)


@settings(max_examples=150)
@given(
    data=st.dictionaries(
        st.text(max_size=8), st.one_of(float_arrays, int_arrays), max_size=12
    ),
)
def test_numpy_arrays_decode_like_lists(data: dict[str, tuple[list[int], list[Any]]]) -> None:
    arrays = {
        name: (np.array(ts, dtype=np.int64), np.array(vs, dtype=type(vs[0]) if vs else float))
        for name, (ts, vs) in data.items()
    }
    expected = as_lists(arrays)
    got = decode(pack_insert(arrays))
    assert same(got, expected)
    assert same(decode(pack_insert_buffer(arrays, headroom=8)[8:]), expected)
    # the list form keeps the order of its series
    form = [{"name": n, "points": p} for n, p in arrays.items()]
    assert same(decode(pack_insert(form)), [{"name": n, "points": expected[n]} for n in arrays])


@pytest.mark.parametrize("series", [3, 50])
@pytest.mark.parametrize("count", [0, 1, 5, 6, 100, 3000])
def test_grouped_series(series: int, count: int) -> None:
    """Many equal series go through the block writer; names of varied lengths too."""
    rng = np.random.default_rng(count)
    arrays = {
        f"s{i * 7919}": (
            np.arange(count, dtype=np.int64) + (i << 33 if i % 2 else i),
            rng.random(count) if i % 3 else rng.integers(-(2**62), 2**62, count),
        )
        for i in range(series)
    }
    assert same(decode(pack_insert(arrays)), as_lists(arrays))


def test_special_floats_are_bit_exact() -> None:
    values = np.array([math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, -1.0, 5e-324])
    got = decode(pack_insert({"s": (np.arange(len(values)), values)}))["s"]
    assert same(got, [[i, v] for i, v in enumerate(values.tolist())])
    assert math.copysign(1.0, got[3][1]) == -1.0  # -0.0 keeps its sign from numpy


def test_other_dtypes_and_shapes() -> None:
    ts = np.arange(1_699_920_000, 1_699_920_006, dtype=np.uint32)
    cases = {
        "f32": (ts, np.linspace(0, 1, 6, dtype=np.float32)),
        "i8": (ts.astype(np.int64), np.arange(6, dtype=np.int8)),
        "u64": (ts.astype(np.uint64), np.arange(6, dtype=np.uint64)),
        "strided": (np.arange(12, dtype=np.int64)[::2], np.arange(12.0)[::2]),
        "str": (ts, np.array(list("abcdef"))),
        "obj": (ts, np.array([1, "x", 2.5, 3, 4, 5], dtype=object)),
    }
    expected = {
        name: [[int(t), v.item() if hasattr(v, "item") else v] for t, v in zip(*pts)]
        for name, pts in cases.items()
    }
    assert same(decode(pack_insert(cases)), expected)
    two_d = np.array([[1, 10], [2, 20]], dtype=np.int64)
    assert decode(pack_insert({"x": two_d})) == {"x": [[1, 10], [2, 20]]}


def test_datetime64_timestamps_need_precision() -> None:
    stamps = np.array(["2023-11-14T00:00:00", "2023-11-14T00:00:01.5"], dtype="datetime64[ms]")
    data = {"x": (stamps, np.array([1.0, 2.0]))}
    with pytest.raises(TypeError, match="precision"):
        pack_insert(data)
    assert decode(pack_insert(data, precision="ms")) == {
        "x": [[1_699_920_000_000, 1.0], [1_699_920_001_500, 2.0]]
    }
    with pytest.raises(ValueError, match="rounding"):
        pack_insert(data, precision="s")
    assert decode(pack_insert(data, precision=0, rounding="ceil"))["x"][1][0] == 1_699_920_002
    # datetimes in lists are converted too, when a precision is given
    listed = {"y": [[dt.datetime(2023, 11, 14), 1]]}
    with pytest.raises(TypeError, match="precision"):
        pack_insert(listed)
    assert decode(pack_insert(listed, precision=0)) == {"y": [[1_699_920_000, 1]]}


def test_errors_name_the_series_and_value() -> None:
    with pytest.raises(TypeError, match=r"'flags'.*bool"):
        pack_insert({"flags": (np.arange(2), np.array([True, False]))})
    with pytest.raises(TypeError, match=r"'flags'.*bool"):
        pack_insert({"flags": [[1, True]]}, validate=True)
    with pytest.raises(OverflowError, match=r"18446744073709551616.*'big'"):
        pack_insert({"big": [[1, 2**64]]})
    with pytest.raises(OverflowError, match=r"18446744073709551615.*'u'"):
        pack_insert({"u": (np.arange(1), np.array([2**64 - 1], dtype=np.uint64))})
    with pytest.raises(OverflowError, match="'t'"):
        pack_insert({"t": (np.array([2**63], dtype=np.uint64), np.array([1.0]))})
    with pytest.raises(TypeError, match=r"'c'.*timestamps must be integers"):
        pack_insert({"c": (np.array([1.5]), np.array([1.0]))})
    with pytest.raises(TypeError, match=r"'z'.*unsupported value"):
        pack_insert({"z": [[1, object()]]})
    with pytest.raises(TypeError, match="'cplx'"):
        pack_insert({"cplx": (np.arange(1), np.array([1j]))})
    with pytest.raises(ValueError, match="'n'"):
        pack_insert({"n": (np.arange(3), np.arange(2.0))})
    # numpy scalars inside lists are fine
    assert decode(pack_insert({"np": [[np.int64(1), np.float32(0.5)]]})) == {"np": [[1, 0.5]]}
    # without validation, plain lists go to qpack as they are (the server rejects bools)
    assert decode(pack_insert({"flags": [[1, True]]})) == {"flags": [[1, True]]}


def test_pandas_objects() -> None:
    index = pd.to_datetime(["2023-11-14 00:00:00", "2023-11-14 00:00:01"]).tz_localize("UTC")
    series = pd.Series([1.5, 2.5], index=index)
    assert decode(pack_insert({"s": series}, precision="s")) == {
        "s": [[1_699_920_000, 1.5], [1_699_920_001, 2.5]]
    }
    berlin = series.tz_convert("Europe/Berlin")
    assert decode(pack_insert({"s": berlin}, precision="s")) == decode(
        pack_insert({"s": series}, precision="s")
    )
    ints = pd.Series([1, 2], index=pd.Index([10, 20]))
    assert decode(pack_insert({"i": ints})) == {"i": [[10, 1], [20, 2]]}
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0], "y": [1, 2, 3]}, index=[10, 20, 30])
    assert decode(pack_insert(frame)) == {
        "x": [[10, 1.0], [30, 3.0]],
        "y": [[10, 1], [20, 2], [30, 3]],
    }
    with pytest.raises(TypeError, match="precision"):
        pack_insert({"s": series})
    with pytest.raises(TypeError, match="column names"):
        pack_insert(pd.DataFrame({0: [1.0]}))


def test_buffer_headroom_is_free_space() -> None:
    data = {"a": (np.arange(10), np.arange(10.0))}
    buf = pack_insert_buffer(data, headroom=8)
    assert bytes(buf[8:]) == pack_insert(data)
    buf[:8] = b"\x00" * 8  # writable
    listed = {"a": [[1, 2]]}
    assert bytes(pack_insert_buffer(listed, headroom=3)[3:]) == qpack.packb(listed)
    with pytest.raises(ValueError):
        pack_insert_buffer(data, headroom=-1)


def test_large_insert_matches_lists() -> None:
    rng = np.random.default_rng(7)
    arrays = {
        "big": (np.arange(200_000, dtype=np.int64) * 1000 + 1_699_920_000_000, rng.random(200_000))
    }
    assert decode(pack_insert(arrays)) == as_lists(arrays)


def test_pack_insert_for_wire_frames_only_numpy_data() -> None:
    import numpy as np

    from tsconnector.protocol.packer import pack_insert_for_wire

    plain = {"a": [[1, 2.5], [2, 3.5]]}
    payload, framed = pack_insert_for_wire(plain, headroom=8)
    assert framed is False
    assert payload == qpack.packb(plain)

    arrays = {"a": (np.array([1, 2], dtype=np.int64), np.array([2.5, 3.5]))}
    buffer, framed = pack_insert_for_wire(arrays, headroom=8)
    assert framed is True
    assert qpack.unpackb(bytes(buffer[8:]), decode="utf-8") == plain
