"""Streams API behaviour: request counts, time arguments, inserts, adoption, exports,
what SiriDB cannot do, and the read-only SQL view's guards on both catalogs."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pandas as pd
import pytest
import pytest_asyncio
from catalog_backends import Backend
from streams_helpers import assert_windows_equal, reference_windows, requests

import tsconnector.streams.store as store_module
from tsconnector import TsClient
from tsconnector.catalog import DatabaseError, SqliteDB
from tsconnector.server import EmbeddedServer
from tsconnector.streams import (
    MAXIMUM_TIME,
    MINIMUM_TIME,
    NotSupportedError,
    QueryRefused,
    RawPoint,
    SeriesNotFoundError,
    StreamDB,
    StreamsError,
    StreamSet,
    adopted_uuid,
    connect,
    series_for,
)

pytest_plugins = ["streams_fixtures"]

T0 = 1_700_000_000_000 * 10**6
MS = 10**6


@pytest_asyncio.fixture
async def mem(client: TsClient) -> AsyncIterator[StreamDB]:
    """A StreamDB with an in-memory SQLite catalog."""
    catalog = SqliteDB(":memory:")
    async with StreamDB(client, catalog) as db:
        yield db
    await catalog.close()


async def _hundred(db: StreamDB, points: int = 50) -> StreamSet:
    streams = await db.create_many(
        {"uuid": uuid.uuid4(), "collection": "bench", "tags": {"name": f"s{i}"}}
        for i in range(100)
    )
    await streams.insert(
        {s: [(T0 + (k * 10 + i % 7) * MS, float(k + i)) for k in range(points)]
         for i, s in enumerate(streams)}
    )
    return streams


async def test_streamset_reads_take_at_most_two_requests(mem: StreamDB, client: TsClient) -> None:
    streams = await _hundred(mem)
    ranged = streams.filter(start=T0, end=T0 + 500 * MS)
    for read, limit in (
        (ranged.values, 2),
        (ranged.windows(100 * MS).values, 2),
        (ranged.aligned_windows(27).values, 2),
        (ranged.earliest, 1),
        (ranged.latest, 1),
        (ranged.count, 1),
        (ranged.to_dataframe, 2),
    ):
        before = requests(client)
        result = await read()
        assert result is not None
        assert requests(client) - before <= limit, read
    windows = await ranged.windows(100 * MS).values()
    assert len(windows) == 100
    assert sum(w.count for w in windows[3]) == 50


async def test_windows_in_many_small_chunks_are_exact(client: TsClient) -> None:
    catalog = SqliteDB(":memory:")
    async with StreamDB(client, catalog, chunk_points=37) as db:
        streams = await _hundred(db, points=20)
        got = await streams.windows(30 * MS).values()
        for i in (0, 6, 99):
            points = [(T0 + (k * 10 + i % 7) * MS, float(k + i)) for k in range(20)]
            count = (MAXIMUM_TIME - MINIMUM_TIME) // (30 * MS)
            expected = reference_windows(points, MINIMUM_TIME, 30 * MS, count)
            assert_windows_equal(got[i], expected)
    await catalog.close()


async def test_values_of_more_than_the_points_limit(mem: StreamDB, client: TsClient) -> None:
    s = await mem.create(uuid.uuid4(), "big", tags={"name": "x"})
    await s.insert((np.arange(5000, dtype=np.int64) * MS + T0, np.arange(5000.0)))
    twin = await mem.create(uuid.uuid4(), "big", tags={"name": "y"})
    await twin.insert((np.arange(5000, dtype=np.int64) * MS + T0, np.arange(5000.0)))
    # the limit drops after the data plane read it: its plans are refused, then split
    await client.query("alter database set select_points_limit 1000")
    before = requests(client)
    pair = StreamSet([s, twin]).filter(start=T0, end=T0 + 5000 * MS).windows(1000 * MS)
    for windows in await pair.values():
        assert [w.count for w in windows] == [1000] * 5
        assert [w.mean for w in windows] == [499.5 + 1000 * k for k in range(5)]
    assert requests(client) - before > 2  # refused once, then read in smaller chunks
    mem.data._settings = None  # read the new limit
    values = await StreamSet([s]).values()
    assert [p.value for p in values[0]] == list(np.arange(5000.0))
    chunks = [len(t) async for t, _ in s.iter_arrays(chunk=700)]
    assert sum(chunks) == 5000
    assert max(chunks) <= 700


async def test_iter_values_reads_in_chunks(mem: StreamDB, client: TsClient) -> None:
    s = await mem.create(uuid.uuid4(), "it", tags={"name": "x"})
    times = T0 + np.arange(10_000, dtype=np.int64) * 3 * MS
    await s.insert((times, np.sin(np.arange(10_000.0))))
    before = requests(client)
    got = [p async for p in s.iter_values(T0 + 3 * MS, T0 + 29_997 * MS, chunk=1000)]
    used = requests(client) - before
    assert [p.time for p in got] == times[1:9999].tolist()
    assert 10 <= used <= 25  # a histogram, then about one request per 1,000 points


async def test_time_arguments_are_exact(mem: StreamDB) -> None:
    s = await mem.create(uuid.uuid4(), "t", tags={"name": "x"})
    when = dt.datetime(2024, 5, 1, 12, 0, 0, 123000)
    await s.insert([(when, 1.0), (np.datetime64("2024-05-01T12:00:00.124", "ms"), 2.0),
                    (pd.Timestamp("2024-05-01T12:00:00.125Z"), 3.0)])
    base = int(pd.Timestamp("2024-05-01T12:00:00.123Z").value)
    assert await s.values(when, when + dt.timedelta(milliseconds=3)) == [
        RawPoint(base, 1.0), RawPoint(base + MS, 2.0), RawPoint(base + 2 * MS, 3.0)
    ]
    aware = when.replace(tzinfo=dt.timezone(dt.timedelta(hours=2)))  # two hours earlier
    assert await s.values(aware, aware + dt.timedelta(hours=3)) != []
    # one ns past a stored ms: the range starts at the next ms
    assert [p.time for p in await s.values(base + 1, base + 3 * MS)] == [base + MS, base + 2 * MS]
    with pytest.raises(ValueError, match="whole number"):
        await s.insert([(base + 1, 1.0)])  # sub-ms time on a ms database
    with pytest.raises(TypeError):
        await s.values(1.5, 2.5)
    assert await s.nearest(base + 1) == RawPoint(base + MS, 2.0)
    assert await s.nearest(base + MS, backward=True) == RawPoint(base, 1.0)
    assert await s.nearest(base, backward=True) is None
    assert await s.current() == RawPoint(base + 2 * MS, 3.0)
    assert await s.count(base, base + 2 * MS) == 2


async def test_insert_forms_and_merge_policies(mem: StreamDB) -> None:
    s = await mem.create(uuid.uuid4(), "ins", tags={"name": "x"})
    assert await s.insert([(T0, 1), (T0 + MS, 2.5)]) == 2
    assert await s.insert((np.array([T0 + 2 * MS]), np.array([3], dtype=np.int32))) == 1
    index = pd.DatetimeIndex([pd.Timestamp(T0 + 3 * MS, tz="UTC")])
    assert await s.insert(pd.Series([4.0], index=index)) == 1
    assert await s.insert(pd.DataFrame({"time": [T0 + 4 * MS], "value": [5.0]})) == 1
    assert await s.insert([(T0, 9.0), (T0 + 9 * MS, 9.0)], merge="retain") == 1
    assert await s.insert([(T0, 1.0), (T0, 7.0)], merge="equal") == 1
    assert [p.value for p in await s.values()] == [1.0, 7.0, 2.5, 3.0, 4.0, 5.0, 9.0]
    assert all(isinstance(p.value, float) for p in await s.values())
    with pytest.raises(NotSupportedError, match="delete"):
        await s.insert([(T0, 1.0)], merge="replace")
    with pytest.raises(ValueError):
        await s.insert([(T0, 1.0)], merge="sometimes")
    with pytest.raises(TypeError):
        await s.insert([(T0, True)])


async def test_what_siridb_cannot_do_says_why(mem: StreamDB) -> None:
    s = await mem.create(uuid.uuid4(), "no", tags={"name": "x"})
    with pytest.raises(NotSupportedError, match="versions"):
        await s.values(0, 10, version=3)
    with pytest.raises(NotSupportedError, match="versions"):
        await s.version()
    with pytest.raises(NotSupportedError, match="range"):
        await s.delete(0, 10)
    with pytest.raises(NotSupportedError):
        await mem.streams(s.uuid, versions=[7])
    assert await mem.streams(s.uuid, versions=[0])


async def test_stream_from_uuid_makes_no_round_trip(mem: StreamDB, client: TsClient) -> None:
    made = await mem.create(uuid.uuid4(), "lazy", tags={"name": "x"})
    await made.insert([(T0, 1.0)])
    before = requests(client)
    lazy = mem.stream_from_uuid(str(made.uuid).upper())
    assert requests(client) == before
    assert not lazy.loaded
    assert await lazy.values() == [RawPoint(T0, 1.0)]  # the series comes from the catalog
    assert lazy.series == series_for(made.uuid)
    assert lazy.name == "x"
    assert not await mem.stream_from_uuid(uuid.uuid4()).exists()


async def test_adopt_existing_series(mem: StreamDB, client: TsClient) -> None:
    await client.insert({"legacy/temp": [[T0 // MS, 20.5]], "legacy/hum": [[T0 // MS, 40]]})
    adopted = await mem.adopt(pattern="legacy/.*", collection="old")  # SiriDB anchors it
    assert sorted(s.uuid for s in adopted) == sorted(
        [adopted_uuid("legacy/temp"), adopted_uuid("legacy/hum")]
    )
    again = await mem.adopt("legacy/temp", collection="elsewhere")
    assert again[0].uuid == adopted_uuid("legacy/temp")
    assert again[0].collection == "old"
    temp = (await mem.streams("old/legacy_temp"))[0]
    assert await temp.values() == [RawPoint(T0, 20.5)]
    hum = adopted[adopted_uuid("legacy/hum")]
    assert await hum.values() == [RawPoint(T0, 40.0)]  # an integer series reads as floats
    with pytest.raises(SeriesNotFoundError):
        await mem.adopt("no/such/series", collection="x")
    await client.query("alter database set list_limit 1000")
    await client.insert({f"many/{i}": [[T0 // MS, 1.0]] for i in range(1000)})
    mem.data._settings = None  # read the new limit
    with pytest.raises(StreamsError, match="list_limit"):
        await mem.adopt(pattern="many/.*", collection="many")  # the list may be cut short
    assert len(await mem.adopt("legacy/temp", "legacy/hum", collection="old")) == 2
    with pytest.raises(SeriesNotFoundError):
        await mem.create(None, "one", tags={"name": "t"}, series="legacy/other", adopt=True)
    await client.insert({"legacy/other": [[T0 // MS, 1.5]]})
    one = await mem.create(None, "one", tags={"name": "t"}, series="legacy/other", adopt=True)
    assert one.uuid == adopted_uuid("legacy/other")
    assert await one.count() == 1
    with pytest.raises(ValueError, match="adopt=True"):
        await mem.create(uuid.uuid4(), "c", tags={"name": "t"}, series="legacy/temp")


async def test_obliterate_removes_points_and_row(mem: StreamDB, client: TsClient) -> None:
    keep = await mem.create(uuid.uuid4(), "o", tags={"name": "keep"})
    gone = await mem.create(uuid.uuid4(), "o", tags={"name": "gone"})
    await StreamSet([keep, gone]).insert({keep: [(T0, 1.0)], gone: [(T0, 2.0)]})
    await gone.obliterate()
    assert not await mem.stream_from_uuid(gone.uuid).exists()
    assert await mem.data.existing([series_for(gone.uuid)]) == {}
    assert await keep.values() == [RawPoint(T0, 1.0)]


async def test_exports(mem: StreamDB, tmp_path: object) -> None:
    a = await mem.create(uuid.uuid4(), "x", tags={"name": "a"})
    b = await mem.create(uuid.uuid4(), "x", tags={"name": "b"})
    both = StreamSet([a, b])
    await both.insert({a: [(T0, 1.0), (T0 + MS, 2.0)], b: [(T0 + MS, 3.0), (T0 + 2 * MS, 4.0)]})
    frame = await both.to_dataframe()
    assert list(frame.columns) == ["x/a", "x/b"]
    assert frame.index.tz is not None
    assert frame.index[0] == pd.Timestamp(T0, tz="UTC")
    assert frame["x/a"].tolist()[:2] == [1.0, 2.0]
    assert np.isnan(frame["x/a"].iloc[2])
    ranged = both.filter(start=T0, end=T0 + 4 * MS).windows(2 * MS)
    windows = await ranged.to_dataframe(agg="all", datetime64_index=False)
    assert windows.loc[T0, ("x/a", "count")] == 2
    assert windows.loc[T0, ("x/b", "max")] == 3.0
    out = io.StringIO()
    await both.to_csv(out)
    assert out.getvalue().splitlines() == [
        "time,x/a,x/b", f"{T0},1.0,", f"{T0 + MS},2.0,3.0", f"{T0 + 2 * MS},,4.0"
    ]
    arrays = await both.to_arrays()
    assert arrays[1][0].tolist() == [T0 + MS, T0 + 2 * MS]
    rows = await both.rows()
    assert rows[0] == (RawPoint(T0, 1.0), None)
    empty = await StreamSet([]).to_dataframe()
    assert empty.empty


async def test_info_and_connect(server: EmbeddedServer, tmp_path: object) -> None:
    dsn = f"siridb://iris:siri@127.0.0.1:{server.port}/dbns"
    async with await connect(dsn, "sqlite://:memory:") as db:
        info = await db.info()
        assert info["time_precision"] == "ns"
        assert info["build"] == "2.0.55"
        assert info["hosts"][0]["state"] == "ready"
        assert info["catalog"] == "sqlite"
        s = await db.create(uuid.uuid4(), "c", tags={"name": "n"})
        await s.insert([(T0 + 1, 1.0)])  # ns database: any ns time
        assert await s.values() == [RawPoint(T0 + 1, 1.0)]
    assert db.client.is_closed


# -- the read-only SQL view ---------------------------------------------------------------

SELECTS_THAT_WORK = [
    ("SELECT count(uuid) AS n FROM streams", [], [{"n": 1}]),
    ("select name from streams where collection = $1", ["sql"], [{"name": "one"}]),
    ("WITH x AS (SELECT name FROM streams) SELECT name FROM x", [], [{"name": "one"}]),
]

REFUSED = [
    "SELECT * FROM tsconnector_streams",
    "SELECT * FROM tsconnector_schema",
    "DELETE FROM streams",
    "UPDATE streams SET name = 'x'",
    "INSERT INTO streams (name) VALUES ('x')",
    "DROP VIEW streams",
    "SELECT * FROM streams; DELETE FROM tsconnector_streams",
    "SELECT * FROM streams WHERE uuid IN (SELECT uuid FROM tsconnector_streams)",
    "SELECT * FROM streams UNION SELECT * FROM tsconnector_streams",
]


async def test_query_view_on_every_backend(sdb: StreamDB, backend: Backend) -> None:
    await sdb.create(uuid.uuid4(), "sql", tags={"name": "one"}, annotations={"k": "v"})
    for stmt, params, expected in SELECTS_THAT_WORK:
        assert await sdb.query(stmt, params) == expected
    for stmt in REFUSED:
        with pytest.raises(QueryRefused):
            await sdb.query(stmt)
    # the rows are intact
    assert [r["name"] for r in await sdb.query("SELECT name FROM streams")] == ["one"]


async def test_database_refuses_what_the_parse_check_would(
    sdb: StreamDB, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the parse-level check switched off, the database's own guards still hold."""
    await sdb.create(uuid.uuid4(), "sql", tags={"name": "one"})
    monkeypatch.setattr(store_module, "check_select", lambda stmt, dialect: None)
    assert await sdb.query("SELECT name FROM streams") == [{"name": "one"}]
    for stmt in [
        "SELECT * FROM tsconnector_streams",
        "SELECT * FROM tsconnector_schema",
        "DELETE FROM tsconnector_streams",
        "INSERT INTO tsconnector_streams (uuid, collection, name, series) "
        "VALUES ('00000000-0000-0000-0000-000000000001', 'c', 'n', 's')",
    ]:
        with pytest.raises(DatabaseError):
            await sdb.query(stmt)
    assert await sdb.query("SELECT count(*) AS n FROM streams") == [{"n": 1}]
    assert len(await sdb.streams_in_collection("sql")) == 1
