"""Streams end to end on the embedded server with SQLite and PostgreSQL catalogs:
1,000 streams found by every route, reads against a reference, atomic updates."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from catalog_backends import Backend
from streams_helpers import assert_windows_equal, reference_windows, requests

from tsconnector import TsClient
from tsconnector.streams import (
    AmbiguousStreamError,
    ConflictError,
    RawPoint,
    StreamDB,
    StreamExists,
    StreamNotFoundError,
    StreamSet,
)

pytest_plugins = ["streams_fixtures"]

N_STREAMS = 1000
N_COLLECTIONS = 20
T0 = 1_700_000_000_000 * 10**6  # ns, on a ms boundary
MS = 10**6


def _collection(i: int) -> str:
    return f"site{i % 4}/area{i % N_COLLECTIONS}"


def _spec(i: int) -> dict[str, object]:
    return {
        "uuid": uuid.UUID(int=i + 1),
        "collection": _collection(i),
        "tags": {"name": f"sensor{i // N_COLLECTIONS}", "unit": ("V", "A", "W")[i % 3],
                 "ingress": "test"},
        "annotations": {"idx": i, "parity": "even" if i % 2 == 0 else "odd",
                        **({"rare": True} if i % 100 == 0 else {})},
    }


def _points(i: int) -> list[tuple[int, float]]:
    # a few streams share times, others are offset: rows() gets holes
    return [(T0 + (k * 7 + i % 3) * MS, float((i * 31 + k * 17) % 101) - 50.0) for k in range(60)]


async def test_thousand_streams_every_route(sdb: StreamDB, client: TsClient) -> None:
    streams = await sdb.create_many(_spec(i) for i in range(N_STREAMS))
    assert len(streams) == N_STREAMS
    with pytest.raises(StreamExists):
        await sdb.create(uuid.UUID(int=1), "x", tags={"name": "dup"})

    # by UUID objects, UUID text in either case, and collection/name
    picks = [0, 1, 37, 999]
    found = await sdb.streams(
        uuid.UUID(int=1), str(uuid.UUID(int=2)).upper(), str(uuid.UUID(int=38)),
        f"{_collection(999)}/sensor{999 // N_COLLECTIONS}",
    )
    assert [s.uuid for s in found] == [uuid.UUID(int=i + 1) for i in picks]
    assert found[3].name == "sensor49"
    assert found[3].collection == _collection(999)
    with pytest.raises(StreamNotFoundError):
        await sdb.streams(str(uuid.UUID(int=5000)))
    with pytest.raises(StreamNotFoundError):
        await sdb.streams("site0/area0/nosuchname")
    # "site0" as a prefix holds sensor0 in 5 collections: ambiguous
    with pytest.raises(AmbiguousStreamError):
        await sdb.streams("site0/sensor0", is_collection_prefix=True)

    # by collection, exact and prefix
    in_area3 = await sdb.streams_in_collection(_collection(3), is_collection_prefix=False)
    assert sorted(s.uuid.int - 1 for s in in_area3) == [i for i in range(N_STREAMS) if i % 20 == 3]
    in_site1 = await sdb.streams_in_collection("site1")
    assert len(in_site1) == N_STREAMS // 4
    assert len(await sdb.streams_in_collection()) == N_STREAMS
    both = await sdb.streams_in_collection("site0/area0", "site1/area1", is_collection_prefix=False)
    assert len(both) == 100
    # by tags and annotations (values as given, or only the key)
    volts = await sdb.streams_in_collection("site2", tags={"unit": "V"})
    assert {s.uuid.int - 1 for s in volts} == {
        i for i in range(N_STREAMS) if i % 4 == 2 and i % 3 == 0
    }
    odd = await sdb.streams_in_collection("site1", annotations={"parity": "odd"})
    assert len(odd) == N_STREAMS // 4
    idx = await sdb.streams_in_collection(annotations={"idx": 123})
    assert [s.uuid.int - 1 for s in idx] == [123]
    assert len(await sdb.streams_in_collection(annotations={"rare": None})) == 10

    # catalog-wide questions
    assert await sdb.list_collections() == sorted({_collection(i) for i in range(N_STREAMS)})
    assert await sdb.list_collections("site3/") == sorted(
        {_collection(i) for i in range(N_STREAMS) if i % 4 == 3}
    )
    assert await sdb.list_unique_units("site0") == ["A", "V", "W"]
    assert len(await sdb.list_unique_names()) == N_STREAMS // N_COLLECTIONS
    assert await sdb.list_unique_annotations() == ["idx", "parity", "rare"]
    tags, annotations = await sdb.collection_metadata("site0")
    assert tags == {"name": 250, "unit": 250, "ingress": 250, "distiller": 0}
    assert annotations == {"idx": 250, "parity": 250, "rare": 10}

    # SQL over the view, $1 parameters on both backends
    rows = await sdb.query(
        "SELECT uuid, name, annotations FROM streams WHERE collection = $1 AND unit = $2 "
        "ORDER BY name", [_collection(5), "W"],
    )
    expected = sorted(f"sensor{i // 20}" for i in range(N_STREAMS) if i % 20 == 5 and i % 3 == 2)
    assert [r["name"] for r in rows] == expected
    assert rows[0]["annotations"]["parity"] == "odd"
    assert isinstance(rows[0]["uuid"], str)
    count = await sdb.query(
        "SELECT count(*) AS n FROM streams WHERE collection LIKE $1", ["site1/%"]
    )
    assert count == [{"n": 250}]

    # StreamSet.filter by metadata (strings ignore case, regexes search)
    subset = in_site1.filter(unit="v", annotations={"parity": "odd"})
    assert {s.uuid.int - 1 for s in subset} == {
        i for i in range(N_STREAMS) if i % 4 == 1 and i % 3 == 0 and i % 2 == 1
    }
    assert len(in_site1.filter(name=re.compile(r"sensor4\d$"))) == 50
    assert len(in_site1) == N_STREAMS // 4  # filter made a new set

    # data for 100 streams in one insert request, read back by every data method
    hundred = StreamSet(list(streams)[:100])
    before = requests(client)
    await hundred.insert({s: _points(s.uuid.int - 1) for s in hundred})
    assert requests(client) - before == 1
    values = await hundred.values()
    assert [len(v) for v in values] == [60] * 100
    assert values[7] == [RawPoint(t, v) for t, v in _points(7)]
    width = 50 * MS
    windowed = await hundred.filter(start=T0, end=T0 + 420 * MS).windows(width).values()
    for i in (0, 1, 2, 55):
        assert_windows_equal(windowed[i], reference_windows(_points(i), T0, width, 420 // 50))
    aligned = await hundred.aligned_windows(25).values()
    start = T0 - T0 % (1 << 25)
    for i in (0, 2, 99):
        expected_w = reference_windows(_points(i), start, 1 << 25, 1 + (60 * 7 * MS) // (1 << 25))
        assert_windows_equal(aligned[i], expected_w)
    assert await hundred.count() == 6000
    earliest = await hundred.earliest()
    assert earliest[4] == RawPoint(*_points(4)[0])
    assert (await hundred.latest())[5] == RawPoint(*_points(5)[-1])
    rows_ = await hundred[:3].rows()
    assert len(rows_) == 180
    assert all(sum(p is not None for p in row) == 1 for row in rows_)
    assert (await StreamSet([streams[0], streams[3]]).rows())[0] == (
        RawPoint(*_points(0)[0]), RawPoint(*_points(3)[0])
    )


@pytest.mark.parametrize(
    "backend",
    ["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)
async def test_concurrent_updates_one_wins(client: TsClient, backend: Backend) -> None:
    first = StreamDB(client, backend.new_db())
    second = StreamDB(client, backend.new_db())  # its own connections to the same store
    async with first:
        await second.open()
        made = await first.create(uuid.uuid4(), "c", tags={"name": "s"}, annotations={"a": 1})
        for round_ in range(5):
            version = made.property_version
            mine = first.stream_from_uuid(made.uuid)
            theirs = second.stream_from_uuid(made.uuid)
            results = await asyncio.gather(
                mine.update(annotations={"who": "first"}, expected_version=version),
                theirs.update(annotations={"who": "second"}, expected_version=version),
                return_exceptions=True,
            )
            wins = [r for r in results if isinstance(r, int)]
            losses = [r for r in results if isinstance(r, ConflictError)]
            assert wins == [version + 1], (round_, results)
            assert len(losses) == 1, (round_, results)
            assert losses[0].current_version == version + 1
            assert losses[0].expected_version == version
            await made.refresh()
            assert made.property_version == version + 1
        await second.close()


async def test_update_is_one_atomic_step(sdb: StreamDB, client: TsClient) -> None:
    s = await sdb.create(uuid.uuid4(), "old/place", tags={"name": "n", "unit": "V"},
                         annotations={"keep": 1, "drop": 2})
    await s.insert([(T0, 1.0), (T0 + MS, 2.0)])
    series = s.series
    version = await s.update(tags={"name": "renamed", "unit": "kV"}, collection="new/place",
                             annotations={"add": [1, 2]})
    assert version == 2  # one bump for tags, collection and annotations together
    fresh = (await sdb.streams("new/place/renamed"))[0]
    assert (fresh.collection, fresh.name, fresh.unit, fresh.series) == (
        "new/place", "renamed", "kV", series
    )
    assert await fresh.annotations() == ({"keep": 1, "drop": 2, "add": [1, 2]}, 2)
    assert await fresh.values() == [RawPoint(T0, 1.0), RawPoint(T0 + MS, 2.0)]  # data stayed
    assert await fresh.update(annotations={"only": "this"}, replace=True) == 3
    assert await fresh.annotations(refresh=True) == ({"only": "this"}, 3)
    with pytest.raises(ConflictError) as caught:
        await fresh.update(tags={"unit": "MV"}, expected_version=2)
    assert caught.value.current_version == 3
    assert (await fresh.tags(refresh=True))["unit"] == "kV"  # nothing of the loser applied

