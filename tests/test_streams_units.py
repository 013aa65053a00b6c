"""Streams building blocks without a server: points, metadata rules, time arguments,
point normalisation, the read-only SQL check, naming, StreamSet immutability."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsconnector.catalog import ConflictError as CatalogConflictError
from tsconnector.streams import (
    ADOPT_NAMESPACE,
    AmbiguousStreamError,
    ConflictError,
    InvalidAnnotation,
    InvalidCollection,
    InvalidTagKey,
    InvalidTagValue,
    QueryRefused,
    RawPoint,
    StatPoint,
    Stream,
    StreamNotFoundError,
    StreamSet,
    adopted_uuid,
    series_for,
    to_nanoseconds,
)
from tsconnector.streams.ingest import apply_merge, normalize_points
from tsconnector.streams.meta import (
    StreamRow,
    check_collection,
    check_tags,
    decode_annotations,
    encode_annotations,
)
from tsconnector.streams.sqlguard import check_select
from tsconnector.streams.timeargs import SERVER_END, UnitRange, unit_range

# -- points --------------------------------------------------------------------------------


def test_points_are_hashable_ordered_and_indexable() -> None:
    a, b = RawPoint(1, 2.0), RawPoint(1, 3.0)
    assert len({a, b, RawPoint(1, 2.0)}) == 2
    assert sorted([RawPoint(5, 0.0), b, a]) == [a, b, RawPoint(5, 0.0)]
    assert (a[0], a[1], a.time, a.value) == (1, 2.0, 1, 2.0)
    s = StatPoint(10, 1.0, 2.0, 3.0, 4, 0.5)
    assert (s.time, s.min, s.mean, s.max, s.count, s.stddev) == tuple(s)
    assert s[4] == 4
    assert hash(s) == hash(StatPoint(10, 1.0, 2.0, 3.0, 4, 0.5))
    assert s < StatPoint(11, 0.0, 0.0, 0.0, 0, 0.0)
    assert RawPoint(1_700_000_000_123_456_789, 0.0).datetime() == dt.datetime(
        2023, 11, 14, 22, 13, 20, 123456, tzinfo=dt.timezone.utc
    )


# -- metadata ------------------------------------------------------------------------------


def test_tags_and_collections_follow_btrdb_rules() -> None:
    assert check_tags({"name": "n", "unit": None}) == {"name": "n", "unit": ""}
    with pytest.raises(InvalidTagKey):
        check_tags({"colour": "red"})
    with pytest.raises(InvalidTagValue):
        check_tags({"name": "a/b"})
    with pytest.raises(InvalidTagValue):
        check_tags({"unit": "x" * 256})
    with pytest.raises(InvalidTagValue):
        check_tags({"unit": 5})
    assert check_collection("a/b/c") == "a/b/c"
    for bad in ("", "/a", "a/", "a//b", "x" * 256, "a\x00b"):
        with pytest.raises(InvalidCollection):
            check_collection(bad)
    assert issubclass(InvalidTagKey, ValueError)


def test_annotations_encode_as_btrdb_stores_them() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5)
    ident = uuid.UUID(int=7)
    encoded = encode_annotations(
        {"s": "plain", "n": 3, "f": 1.5, "l": [1, "a"], "d": {"k": None}, "u": ident,
         "t": when, "set": {2, 1}, "none": None, "é": "ünïcode"}
    )
    assert encoded == {
        "s": "plain", "n": "3", "f": "1.5", "l": '[1, "a"]', "d": '{"k": null}',
        "u": str(ident), "t": "2024-01-02T03:04:05+00:00", "set": "[1, 2]", "none": "null",
        "é": "ünïcode",
    }
    decoded = decode_annotations(encoded)
    assert decoded["s"] == "plain"
    assert decoded["n"] == 3
    assert decoded["l"] == [1, "a"]
    assert decoded["é"] == "ünïcode"
    assert decode_annotations({"q": "42"}) == {"q": 42}  # BTrDB's format: "42" reads as 42
    with pytest.raises(InvalidAnnotation):
        encode_annotations({"k": "x" * 256})
    with pytest.raises(InvalidAnnotation):
        encode_annotations({"": "v"})
    with pytest.raises(InvalidAnnotation):
        encode_annotations({"k": object()})


# -- time arguments ------------------------------------------------------------------------


def test_time_arguments_convert_exactly() -> None:
    assert to_nanoseconds(1_700_000_000_123_456_789) == 1_700_000_000_123_456_789
    assert to_nanoseconds(dt.datetime(1970, 1, 1, 0, 0, 1, 5)) == 1_000_005_000
    aware = dt.datetime(1970, 1, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert to_nanoseconds(aware) == 0
    assert to_nanoseconds(np.datetime64(123456789, "ns")) == 123456789
    assert to_nanoseconds(np.datetime64("1970-01-02", "D")) == 86400 * 10**9
    assert to_nanoseconds(pd.Timestamp(987654321, unit="ns", tz="UTC")) == 987654321
    for bad in (1.5, "2024-01-01", True, None):
        with pytest.raises(TypeError):
            to_nanoseconds(bad)


@given(st.integers(-(1 << 70), 1 << 70), st.integers(-(1 << 70), 1 << 70), st.integers(0, 3))
def test_unit_range_selects_exactly_the_units_inside(start: int, end: int, precision: int) -> None:
    unit = 10 ** (9 - 3 * precision)
    rng = unit_range(start, end, precision)
    assert 0 <= rng.start <= SERVER_END
    assert 0 <= rng.end <= SERVER_END
    for t in (rng.start - 1, rng.start, rng.end - 1, rng.end):
        if 0 <= t < SERVER_END:
            inside = start <= t * unit < end
            assert inside == (rng.start <= t < rng.end)


def test_range_clauses() -> None:
    assert UnitRange(0, SERVER_END).clause() == ""
    assert UnitRange(5, SERVER_END).clause() == " after 5"
    assert UnitRange(5, 9).clause() == " between 5 and 9"
    assert UnitRange(5, 5).empty


# -- points given to insert ----------------------------------------------------------------


def test_normalize_points_every_form() -> None:
    ms = 1  # precision code of milliseconds
    expected_ts = [1, 2]
    forms = [
        [(10**6, 1), (2 * 10**6, 2.5)],
        [RawPoint(10**6, 1.0), RawPoint(2 * 10**6, 2.5)],
        (np.array([10**6, 2 * 10**6]), np.array([1.0, 2.5])),
        (np.array([1, 2], dtype="datetime64[ms]"), np.array([1, 2.5])),
        pd.Series([1.0, 2.5], index=pd.to_datetime([10**6, 2 * 10**6], utc=True)),
        pd.DataFrame({"time": [10**6, 2 * 10**6], "value": [1.0, 2.5]}),
        [(dt.datetime(1970, 1, 1, 0, 0, 0, 1000), 1), (np.datetime64(2, "ms"), 2.5)],
    ]
    for points in forms:
        ts, values = normalize_points(points, ms)
        assert ts.tolist() == expected_ts, points
        assert values.dtype == np.float64
        assert values.tolist() == [1.0, 2.5]
    with pytest.raises(ValueError, match="whole number"):
        normalize_points([(1, 1.0)], ms)
    with pytest.raises(ValueError):
        normalize_points([(1, 2, 3)], ms)
    with pytest.raises(TypeError):
        normalize_points([(10**6, "text")], ms)
    with pytest.raises(TypeError):
        normalize_points("nonsense", ms)
    assert normalize_points([], ms)[0].tolist() == []


def test_merge_policies_drop_what_they_should() -> None:
    ts = np.array([1, 2, 2, 3], dtype=np.int64)
    vs = np.array([1.0, 2.0, 5.0, 3.0])
    stored_ts, stored_vs = np.array([2, 3], dtype=np.int64), np.array([2.0, 9.0])
    kept = apply_merge("retain", ts, vs, stored_ts, stored_vs)
    assert kept[0].tolist() == [1]
    kept = apply_merge("equal", ts, vs, stored_ts, stored_vs)
    assert list(zip(*(a.tolist() for a in kept))) == [(1, 1.0), (2, 5.0), (3, 3.0)]
    kept = apply_merge("never", ts, vs, stored_ts, stored_vs)
    assert len(kept[0]) == 4


# -- the read-only SQL check ---------------------------------------------------------------

ALLOWED = [
    "select * from streams",
    "SELECT count(uuid) FROM streams WHERE collection=$1::text",
    "select count(uuid) from streams where annotations->$1::text is not null",
    "with x as (select name from streams) select * from x",
    "with recursive a (n) as (select 1 union all select n + 1 from a where n < 3) select n from a",
    "select j.key, count(*) from streams, json_each(streams.annotations) j group by j.key",
    "select * from streams s join streams t on s.name = t.name",
    "select substring(name from 2 for 3) from streams",
    "select * from streams where name in (select name from streams where unit = 'V');",
    "select count(*) filter (where unit = 'V') from streams",
    "select name::varchar(256) from streams",
    "select * from streams where name = 'x; drop table t' -- ; comment",
    "select left(name, 2) from streams left join streams s2 on true",
    "select * from streams order by name limit 3 offset 1",
    "select * from streams /* delete from x */ where name = $1",
]
ALLOWED_PG_ONLY = [
    "select * from streams where name = E'it\\'s; insert'",
    "select * from streams where name = $tag$ '; drop table x; $tag$",
    "select * from streams /* nested /* comment */ delete */",
]
REFUSED = [
    "insert into streams values (1)",
    "delete from streams",
    "update streams set name = 'x'",
    "select * from tsconnector_streams",
    "select * from streams; drop table x",
    "select set_config('role', 'postgres', true)",
    "select query_to_xml('select 1', true, true, '')",
    "select * from pg_catalog.pg_tables",
    "select * into t2 from streams",
    "select * from streams for update",
    "select * from streams for share",
    "select * from (select * from other) x",
    "select * from streams union select * from other",
    "select * from streams where uuid in (table other)",
    "select pg_read_file('/etc/passwd')",
    'select "set_config"(\'a\', \'b\', true)',
    "vacuum",
    "pragma table_info(streams)",
    "with x as (delete from streams returning *) select * from x",
    "select * from streams, other",
    "select * from streams join other on true",
    "select * from public.streams",
    "select * from streams where x = 'unterminated",
    "select * from streams /* unterminated",
    "select load_extension('x')",
    "select * from sqlite_master",
    "",
    "   ;  ",
    "explain select * from streams",
    "select 1from tsconnector_streams",
    "select * from 'tsconnector_streams'",
    "select * from streams, 'tsconnector_schema'",
]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_sql_check_allows_reads_of_the_view(dialect: str) -> None:
    for stmt in ALLOWED + (ALLOWED_PG_ONLY if dialect == "postgresql" else []):
        check_select(stmt, dialect)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_sql_check_refuses_everything_else(dialect: str) -> None:
    for stmt in REFUSED:
        with pytest.raises(QueryRefused):
            check_select(stmt, dialect)
    with pytest.raises(TypeError):
        check_select(b"select 1", dialect)  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_sql_check_never_crashes_on_text(text: str) -> None:
    for dialect in ("sqlite", "postgresql"):
        try:
            check_select(text, dialect)
        except QueryRefused:
            pass


# -- naming, errors, sets ------------------------------------------------------------------


def test_series_names_and_adopted_uuids_are_stable() -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert series_for(ident) == "stream:12345678-1234-5678-1234-567812345678"
    assert uuid.uuid5(uuid.NAMESPACE_URL, "tsconnector:streams:adopted-series") == ADOPT_NAMESPACE
    assert adopted_uuid("plant/temp") == uuid.uuid5(ADOPT_NAMESPACE, "plant/temp")
    assert adopted_uuid("plant/temp") == adopted_uuid("plant/temp")


def test_errors_are_typed() -> None:
    conflict = ConflictError("x", expected_version=1, current_version=3)
    assert isinstance(conflict, CatalogConflictError)
    assert (conflict.expected, conflict.actual, conflict.current_version) == (1, 3, 3)
    assert issubclass(AmbiguousStreamError, StreamNotFoundError)
    assert issubclass(StreamNotFoundError, LookupError)


class _FakeDB:
    """Enough of a StreamDB for sets of loaded streams (no I/O happens)."""


def _stream(db: _FakeDB, i: int, unit: str = "V") -> Stream:
    row = StreamRow(
        uuid=uuid.UUID(int=i), collection=f"c{i % 2}", series=f"s{i}",
        tags={"name": f"n{i}", "unit": unit}, annotations={"k": str(i)},
    )
    return Stream(db, row.uuid, row)  # type: ignore[arg-type]


def test_streamset_is_immutable() -> None:
    db = _FakeDB()
    streams = [_stream(db, i, "V" if i % 2 else "A") for i in range(1, 7)]
    full = StreamSet([*streams, streams[0]])
    assert len(full) == 6  # duplicates dropped, order kept
    windowed = full.windows(10)
    aligned = full.aligned_windows(20)
    narrowed = full.filter(start=5, end=50, unit="v", annotations={"k": 3})
    assert repr(full) == "<StreamSet of 6 streams>"
    assert "windows=10" in repr(windowed)
    assert "pointwidth=20" in repr(aligned)
    assert [s.uuid.int for s in narrowed] == [3]
    assert (narrowed.start, narrowed.end) == (5, 50)
    assert narrowed.filter(start=1, end=100).start == 5  # filters only narrow
    assert full[0] is streams[0]
    assert full[str(uuid.UUID(int=2)).upper()] is streams[1]
    assert uuid.UUID(int=3) in full
    assert str(uuid.UUID(int=3)) in full
    assert "nonsense" not in full
    assert len(full[1:3]) == 2
    with pytest.raises(KeyError):
        full[uuid.UUID(int=99)]
    with pytest.raises(ValueError):
        full.windows(10, depth=1)
    with pytest.raises(ValueError):
        full.aligned_windows(64)
    assert StreamSet([]).filter(unit="x").uuids == []
