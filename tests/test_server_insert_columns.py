"""The vectorised insert path against per-point models.

The parser's fast paths (numpy runs of fixed-width points, regular-expression runs) are
checked against the same parser reading every point token by token; the vectorised
coercion and storage against :func:`coerce_value` and :meth:`Series.add_points`; the
journal form of the columns against a round trip.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import qpack
from hypothesis import given
from hypothesis import strategies as st
from server_wire import RawClient

from tsconnector.protocol import AnswerType, RequestType
from tsconnector.protocol.packer import pack_insert
from tsconnector.server import EmbeddedServer
from tsconnector.server import insert as ins
from tsconnector.server.model import Database, Series, coerce_value
from tsconnector.server.pointpack import pack_point_columns
from tsconnector.server.points import Columns, coerce
from tsconnector.server.wire import pack_answer

TS0 = 1_699_920_000

ints = st.integers(-(2**63), 2**63 - 1)
floats = st.floats(allow_nan=True, allow_infinity=True)
values = st.one_of(ints, floats, st.text(max_size=3))
stamps = st.integers(0, 2**32 - 1)


def _marker_int(value: int, width: int) -> bytes:
    """``value`` as a qpack integer of a fixed width (markers 0xE8..0xEB)."""
    code = {1: "<b", 2: "<h", 4: "<i", 8: "<q"}[width]
    return bytes([{1: 0xE8, 2: 0xE9, 4: 0xEA, 8: 0xEB}[width]]) + struct.pack(code, value)


@st.composite
def fixed_points(draw: Any) -> bytes:
    """Points in fixed-width layouts, in runs (as numpy input is packed), some mixed."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        tw = draw(st.sampled_from([4, 8]))
        kind = draw(st.sampled_from(["f", 1, 2, 4, 8]))
        for _ in range(draw(st.integers(1, 40))):
            ts = draw(st.integers(0, 2**31 - 1))
            if kind == "f":
                val = b"\xec" + struct.pack("<d", draw(floats))
            else:
                assert isinstance(kind, int)
                val = _marker_int(draw(st.integers(-(2 ** (8 * kind - 1)),
                                                   2 ** (8 * kind - 1) - 1)), kind)
            out.append(b"\xef" + _marker_int(ts, tw) + val)
    return b"".join(out)


def _token_by_token(payload: bytes, precision: int = 0) -> Any:
    """The parser's answer with its fast paths switched off (the per-point model)."""
    saved = ins._uniform_run, ins._POINT_RUN
    ins._uniform_run = lambda *args: None  # type: ignore[assignment]
    ins._POINT_RUN = re.compile(b"(?!)")
    try:
        return _outcome(payload, precision)
    finally:
        ins._uniform_run, ins._POINT_RUN = saved


def _outcome(payload: bytes, precision: int = 0) -> Any:
    try:
        batch = ins.parse_insert(payload, precision)
    except ins.InsertRejected as exc:
        return "error", str(exc)
    return batch.count, _canonical(batch.points())


def _canonical(points: dict[str, list[list[Any]]]) -> Any:
    """Points with NaN made comparable and the value's type kept."""
    return {
        name: [(t, type(v).__name__, "nan" if v != v else v) for t, v in pts]
        for name, pts in points.items()
    }


@given(st.lists(fixed_points(), min_size=1, max_size=3), st.integers(0, 3))
def test_fixed_width_runs_parse_like_token_reading(runs: list[bytes], precision: int) -> None:
    payload = b"\xfd" + b"".join(
        qpack.packb(f"s{i % 2}") + b"\xfc" + run + b"\xfe" for i, run in enumerate(runs)
    )
    assert _outcome(payload, precision) == _token_by_token(payload, precision)


@given(st.dictionaries(st.text(min_size=1, max_size=4),
                       st.lists(st.tuples(stamps, values), min_size=1, max_size=50),
                       min_size=1, max_size=4),
       st.booleans())
def test_qpack_lists_parse_like_token_reading(data: dict[str, Any], as_list: bool) -> None:
    if as_list:
        payload = qpack.packb([{"name": k, "points": v} for k, v in data.items()])
    else:
        payload = qpack.packb(data)
    assert _outcome(payload) == _token_by_token(payload)


@given(st.integers(0, 60), st.sampled_from([-1, 2**32, 2**40]), st.sampled_from(["s", "ms"]))
def test_out_of_range_timestamp_in_a_numpy_run(where: int, bad: int, unit: str) -> None:
    ts = np.arange(TS0, TS0 + 61, dtype=np.int64)
    ts[where] = bad
    payload = pack_insert({"x": (ts, np.linspace(0, 1, 61))})
    precision = 0 if unit == "s" else 1
    outcome = _outcome(payload, precision)
    assert outcome == _token_by_token(payload, precision)
    if bad < 0 or precision == 0:
        assert outcome == ("error", ins.ERR_TIMESTAMP_OUT_OF_RANGE)


def test_a_bad_point_after_a_numpy_run_keeps_its_error() -> None:
    good = pack_insert({"x": (np.arange(TS0, TS0 + 100, dtype=np.int64), np.ones(100))})
    assert good.endswith(b"\xfe") or good[-1] != 0xFE
    head = good[:-1] if good.endswith(b"\xfe") else good
    for tail, message in (
        (b"\xef\xfb\x01", ins.ERR_EXPECTING_INTEGER_TS),
        (b"\xef\x01\xf9", ins.ERR_UNSUPPORTED_VALUE),
        (b"\xef\x41\x01", ins.ERR_TIMESTAMP_OUT_OF_RANGE),
    ):
        payload = head + tail + b"\xfe"
        assert _outcome(payload) == ("error", message) == _token_by_token(payload)


def test_numpy_payload_is_decoded_exactly() -> None:
    ts = np.arange(TS0, TS0 + 10_000, dtype=np.int64)
    vals = np.random.default_rng(3).random(10_000)
    vals[5] = -0.0
    vals[6] = math.nan
    batch = ins.parse_insert(pack_insert({"x": (ts, vals), "y": (ts, ts * 3)}))
    assert batch.count == 20_000
    np.testing.assert_array_equal(batch.series["x"].ts, ts)
    assert batch.series["x"].values.tobytes() == vals.tobytes()  # bit exact, -0.0 and NaN
    assert batch.series["y"].values.dtype == np.int64
    np.testing.assert_array_equal(batch.series["y"].values, ts * 3)


@given(st.lists(values, min_size=1, max_size=40), st.sampled_from(["integer", "float", "string"]))
def test_vectorised_coercion_matches_coerce_value(vals: list[Any], tp: Any) -> None:
    cols = Columns(np.zeros(len(vals), dtype=np.int64), _as_column(vals))
    got = coerce(tp, cols.values).tolist()
    want = [coerce_value(tp, v) for v in vals]
    assert [(type(v), "nan" if v != v else v) for v in got] == [
        (type(v), "nan" if v != v else v) for v in want
    ]


def _as_column(vals: list[Any]) -> np.ndarray:
    if all(type(v) is float for v in vals):
        return np.array(vals, dtype=np.float64)
    if all(type(v) is int for v in vals):
        return np.array(vals, dtype=np.int64)
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf, 2.0**63, -(2.0**64), -2.5])
def test_float_to_integer_edge_cases(special: float) -> None:
    got = coerce("integer", np.array([special], dtype=np.float64)).tolist()
    assert got == [coerce_value("integer", special)]


batches = st.lists(st.lists(st.tuples(st.integers(0, 80), st.integers(-5, 5)), max_size=60),
                   min_size=1, max_size=5)


@given(batches)
def test_add_columns_matches_add_points(batches_: list[list[tuple[int, int]]]) -> None:
    by_points, by_columns = Series("a", 1, "integer"), Series("b", 2, "integer")
    for points in batches_:
        by_points.add_points(points)
        by_columns.add_columns(np.array([p[0] for p in points], dtype=np.int64),
                               [p[1] for p in points])
    assert (by_columns.ts, by_columns.values) == (by_points.ts, by_points.values)


@given(st.lists(st.tuples(stamps, values), min_size=1, max_size=30))
def test_journal_form_round_trips_and_applies_like_lists(points: list[tuple[int, Any]]) -> None:
    cols = Columns(np.array([p[0] for p in points], dtype=np.int64),
                   _as_column([p[1] for p in points]))
    again = Columns.decode(cols.encode())
    assert _canonical({"x": again.points()}) == _canonical({"x": cols.points()})
    by_lists, by_columns, by_journal = Database("l"), Database("c"), Database("j")
    by_lists.insert({"x": [list(p) for p in points]})
    by_columns.insert({"x": cols})
    by_journal.apply(("points", {"x": cols.encode()}))
    want = _canonical({"x": [[t, v] for t, v in zip(by_lists.series["x"].ts,
                                                     by_lists.series["x"].values)]})
    for db in (by_columns, by_journal):
        series = db.series["x"]
        assert series.tp == by_lists.series["x"].tp
        assert _canonical({"x": [[t, v] for t, v in zip(series.ts, series.values)]}) == want


def test_damaged_journal_form_is_refused() -> None:
    with pytest.raises(ValueError):
        Columns.decode([b"\0" * 8, "q", b""])
    with pytest.raises(ValueError):
        Columns.decode([b"\0" * 16, "i", b"\0" * 8])


# -- answers: point columns packed byte for byte as qpack packs the lists ---------------

answer_ints = st.one_of(st.integers(-70, 70), ints, st.sampled_from(
    [2**7 - 1, 2**7, -(2**7), -(2**7) - 1, 2**15 - 1, 2**15, -(2**15), -(2**15) - 1,
     2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, -(2**63)]))
answer_floats = st.one_of(floats, st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0]))


@given(st.lists(st.tuples(answer_ints, st.one_of(answer_ints, answer_floats)), max_size=80),
       st.booleans())
def test_point_columns_pack_like_qpack(points: list[tuple[int, Any]], as_float: bool) -> None:
    ts = np.array([p[0] for p in points], dtype=np.int64)
    if as_float:
        vals = [float(p[1]) for p in points]
        column = np.array(vals, dtype=np.float64)
    else:
        vals = [p[1] if isinstance(p[1], int) else 7 for p in points]
        column = np.array(vals, dtype=np.int64)
    want = qpack.packb([[t, v] for t, v in zip(ts.tolist(), vals)])
    assert pack_point_columns(ts, column) == want


@pytest.mark.parametrize("values", [
    np.linspace(-3, 3, 50_000),  # some -1.0, 0.0, 1.0 among doubles: variable sizes
    np.arange(-40_000, 10_000, dtype=np.int64),  # every integer size
    np.random.default_rng(5).random(50_000),  # one fixed-width layout
])
def test_large_point_columns_pack_like_qpack(values: np.ndarray) -> None:
    ts = np.arange(TS0, TS0 + len(values), dtype=np.int64)
    want = qpack.packb([[t, v] for t, v in zip(ts.tolist(), values.tolist())])
    assert pack_point_columns(ts, values) == want


def test_answers_with_columns_pack_like_lists() -> None:
    ts = np.arange(TS0, TS0 + 20, dtype=np.int64)
    cols = Columns(ts, np.linspace(0, 1, 20))
    assert pack_answer({"x": cols}) == pack_answer({"x": cols.points()})
    strings = Columns(ts[:3], np.array(["a", "b", "c"], dtype=object))
    assert pack_answer({"s": strings}) == pack_answer({"s": strings.points()})


async def test_numpy_inserts_recover_bit_exact_from_the_log(tmp_path: Path) -> None:
    ts = np.arange(TS0, TS0 + 1000, dtype=np.int64)
    floats_ = np.random.default_rng(9).random(1000)
    floats_[:3] = [-0.0, math.nan, math.inf]
    ints_ = np.arange(1000, dtype=np.int64) * 2**53
    ints_[:2] = [2**63 - 1, -(2**63)]
    payloads = [
        pack_insert({"f": (ts, floats_), "i": (ts, ints_)}),
        pack_insert({"f": (ts + 1000, ints_ // 2**40)}),  # ints into a float series
        pack_insert({"i": (ts[::-1] - 5, floats_ * 1e6)}),  # out of order, floats into ints
    ]
    srv = EmbeddedServer(data_dir=tmp_path)
    await srv.start()
    client = await RawClient.connect(srv.port)
    await client.auth()
    for payload in payloads:
        client.send(RequestType.INSERT, payload, raw=True)
        assert (await client.recv(timeout=30)).tp == AnswerType.RES_INSERT
    await client.close()
    expected = srv.database("dbtest").snapshot()
    for store in srv.state.stores.values():  # crash-like stop: the log is all there is
        await store.close(final_snapshot=False)
    srv.close()
    await srv.wait_closed()
    async with EmbeddedServer(data_dir=tmp_path) as again:
        db = again.database("dbtest")
        assert again.state.stores["dbtest"].recovered_records == len(payloads)
        got = db.snapshot()
        assert msgpack.packb(got["series"]) == msgpack.packb(expected["series"])  # NaN too
        assert db.series["f"].length == 2000
        assert db.series["i"].length == 2000
        assert db.series["f"].tp == "float"
        assert db.series["i"].tp == "integer"
        assert struct.pack("<d", db.series["f"].values[0]) == struct.pack("<d", -0.0)


# -- the shard model's buffer path, batched, against the point-by-point original ---------


class _PointByPoint(Database):
    """The buffer path as SiriDB walks it: one point at a time, list scans in _settle."""

    def _buffer_points(
        self, series: Any, ordered: Any, expire_at: int, columns: Any = None
    ) -> None:
        for point in ordered:
            self._buffer_point(series, point, expire_at)

    @staticmethod
    def _settle(series: Any, new: Any, stored: Any, kept: Any) -> None:
        remaining = list(kept)
        keep_new = []
        for point in new:
            if point in remaining:
                remaining.remove(point)
                keep_new.append(point)
        lost = []
        for point in stored:
            if point in remaining:
                remaining.remove(point)
            else:
                lost.append(point)
        if keep_new:
            series.add_points(keep_new)
        if lost:
            series.remove_points(lost)


small_inserts = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 3_000_000), st.one_of(st.integers(-9, 9), floats)),
                 min_size=1, max_size=70),
        # the insert's expiration time: points of shards (a week, for irregular points)
        # that ended before it are not stored, and stored ones there are dropped when
        # the buffer flushes
        st.sampled_from([0, 0, 1_300_000, 2_000_000]),
        st.booleans(),  # as columns (a numpy insert) or as lists
    ),
    min_size=1, max_size=12)


@given(small_inserts)
def test_batched_buffer_path_stores_as_point_by_point(inserts: list[Any]) -> None:
    batched = Database("b", 0, buffer_size=64 * 16)  # a 64-point buffer: flushes often
    reference = _PointByPoint("r", 0, buffer_size=64 * 16)
    for points, expire_at, as_columns in inserts:
        for db in (batched, reference):
            db.exp_at_num = expire_at
            if as_columns:
                db.insert({"s": Columns(np.array([p[0] for p in points], dtype=np.int64),
                                        _as_column([p[1] for p in points]))})
            else:
                db.insert({"s": [list(p) for p in points]})
    want, got = reference.snapshot(), batched.snapshot()
    for snap in (want, got):
        snap.pop("name")
        snap.pop("uuid")
    assert msgpack.packb(got) == msgpack.packb(want)
