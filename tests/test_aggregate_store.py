"""Message store, journal writes, aggregated-stream reads and the projector on every backend."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsconnector.aggregate import (
    MessageNotFound,
    MessageStore,
    PointBatch,
    SeriesNamePartitioner,
)
from tsconnector.aggregate.codec import decode_points, encode_points
from tsconnector.aggregate.stream import like_to_regex
from tsconnector.catalog import Database
from tsconnector.client import TsClient
from tsconnector.exceptions import InsertError

_names = itertools.count()


def new_store(db: Database, client: TsClient | None = None, **kw: Any) -> MessageStore:
    return MessageStore(f"store{next(_names)}", db, client, **kw)


async def collect(items: Any) -> list[Any]:
    """An async iterator's items as a list."""
    return [item async for item in items]


async def server_points(client: TsClient, name: str) -> list[list[Any]]:
    answer = await client.query("select * from $1", params=[__import__("tsconnector").Name(name)])
    return list(answer.get(name, []))


async def test_write_inserts_once_and_stores_one_message(
    catalog_db: Database, tsclient: TsClient
) -> None:
    store = await new_store(catalog_db, tsclient).open()
    first = await store.write("cpu", [[1, 1.5], [2, 2.5]])
    second = await store.write_many({"cpu": [[3, 3.5]], "mem": [[1, 7]]})
    assert first == ("cpu", 1, 1)
    assert second == [("cpu", 2, 2), ("mem", 1, 3)]
    assert await server_points(tsclient, "cpu") == [[1, 1.5], [2, 2.5], [3, 3.5]]
    assert await server_points(tsclient, "mem") == [[1, 7]]
    assert await store.journal() == []
    assert await store.head() == 3
    messages = [m async for m in store.read("cpu")]
    assert [(m.version, m.global_position, m.source) for m in messages] == [
        (1, 1, "journal"),
        (2, 2, "journal"),
    ]
    assert messages[0].points.points() == [[1, 1.5], [2, 2.5]]
    assert messages[0].added_at.tzinfo is not None
    assert (await store.get_message(messages[1].message_id)).points.points() == [[3, 3.5]]
    with pytest.raises(MessageNotFound):
        await store.get_message("nope")
    assert await store.stream_counts() == {"cpu": 3, "mem": 1}


async def test_writer_buffers_groups_and_flushes_on_close(
    catalog_db: Database, tsclient: TsClient
) -> None:
    store = new_store(catalog_db, tsclient)
    async with store.writer(max_points=5, flush_interval=60) as w:
        for i in range(12):
            await w.add(f"s{i % 3}", [[i, i]])
    assert w.stats["points"] == 12
    assert w.stats["groups"] == 3  # 5 + 5 at max_points, 2 at close
    counts = await store.stream_counts()
    assert counts == {"s0": 4, "s1": 4, "s2": 4}
    for name in ("s0", "s1", "s2"):
        assert len(await server_points(tsclient, name)) == 4


async def test_concurrent_writes_of_one_series_are_serialised(
    catalog_db: Database, tsclient: TsClient
) -> None:
    store = await new_store(catalog_db, tsclient).open()
    positions = await asyncio.gather(
        *(store.write("same", [[i, float(i)]]) for i in range(10)),
        store.write_many({"same": [[100, 1.0]], "other": [[1, 1.0]]}),
    )
    versions = [*(p.version for p in positions[:10]), positions[10][0].version]
    assert sorted(versions) == list(range(1, 12))
    assert len(await server_points(tsclient, "same")) == 11
    assert await store.journal() == []
    assert store._series_locks == {}


async def test_writer_flushes_on_its_interval(catalog_db: Database, tsclient: TsClient) -> None:
    store = new_store(catalog_db, tsclient)
    async with store.writer(max_points=1000, flush_interval=0.01) as w:
        await w.add("tick", [[1, 1.0], [2, 2.0]])
        deadline = asyncio.get_running_loop().time() + 30
        while w.stats["points"] < 2:  # written by the writer's timer, not by close()
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert w.positions == [("tick", 1, 1)]
    assert len(await server_points(tsclient, "tick")) == 2


async def test_rejected_insert_leaves_no_journal_entry(
    catalog_db: Database, tsclient: TsClient
) -> None:
    store = await new_store(catalog_db, tsclient).open()
    await store.write("num", [[1, 1.0]])
    with pytest.raises(InsertError, match="range"):
        await store.write("num", [[2**40, 2.0]])  # out of range in seconds
    assert await store.journal() == []
    assert await store.head() == 1
    assert await store.write("num", [[2, 2.0]]) == ("num", 2, 2)


async def test_append_rolled_back_leaves_no_gap(catalog_db: Database) -> None:
    store = await new_store(catalog_db).open()
    assert await store.append({"a": [[1, 1]]}) == [("a", 1, 1)]
    async with catalog_db.session() as s:
        assert await store.append({"a": [[2, 2]]}, session=s) == [("a", 2, 2)]
        await s.rollback()
    assert await store.append([PointBatch("b", (5,), ("x",))]) == [("b", 1, 2)]
    assert [m.global_position async for m in store.read_all()] == [1, 2]
    with pytest.raises(ValueError, match="empty"):
        await store.append([PointBatch("b", (), ())])


async def test_store_precision_must_match_the_client(
    catalog_db: Database, tsclient: TsClient
) -> None:
    store = await new_store(catalog_db, tsclient).open()
    assert store.time_precision == 0
    async with catalog_db.session() as s:
        await s.execute(
            "UPDATE tsconnector_agg_stores SET time_precision = 3 WHERE id = $1", store.store_id
        )
        await s.commit()
    with pytest.raises(ValueError, match="precision"):
        await MessageStore(store.name, catalog_db, tsclient).open()


async def test_projector_gives_gapless_positions_and_reads(catalog_db: Database) -> None:
    store = await new_store(catalog_db).open()
    parts = SeriesNamePartitioner(3)
    stream = store.aggregated_stream("all", parts, ["s%"], update_batch_size=4)
    await store.append({f"s{i % 5}": [[10 + i, i]] for i in range(5)})
    await store.append({"other": [[1, 1]], "s1": [[100, 1]], "S1": [[1, 1]]})
    await store.append({f"s{i}": [[200 + i, i]] for i in range(5)})
    result = await stream.projector.update_full()
    assert result.n_updated_messages == 11
    assert not result.more_messages_available
    assert await stream.projector.pending() == 0
    seen = []
    for p in range(3):
        entries = [m async for m in stream.read(p)]
        assert [m.position for m in entries] == list(range(len(entries)))
        gps = [m.stored_message.global_position for m in entries]
        assert gps == sorted(gps)
        assert all(parts.partition_of(m.stored_message.stream) == p for m in entries)
        seen.extend(gps)
    assert sorted(seen) == [1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 13]  # not "other", not "S1"
    p0 = parts.partition_of("s1")
    sliced = [m async for m in stream.read_slice(p0, 1, 2)]
    assert [m.position for m in sliced] == [1, 2][: len(sliced)]
    maxpos = await stream.get_max_positions()
    stats = await stream.get_partition_statistics()
    assert {s.partition_number: s.max_position for s in stats} == maxpos
    assert all(s.next_message_position == 0 for s in stats)
    limited = await stream.get_partition_statistics(position_limits=dict(maxpos))
    assert limited == []
    some = await stream.get_partition_statistics(position_limits={p0: 0}, result_limit=1)
    assert len(some) == 1
    if some[0].partition_number == p0:
        assert some[0].next_message_position == 1
    # time: the first message at or after t in each partition, else the next position
    at = await stream.time_to_positions(200)
    for p, pos in at.items():
        msgs = [m async for m in stream.read(p)]
        expected = next((m.position for m in msgs if m.stored_message.occurred_at >= 200), None)
        assert pos == (expected if expected is not None else maxpos[p] + 1)
    when = dt.datetime(1970, 1, 1, 0, 3, 20)  # naive = UTC; = 200 s
    with pytest.raises(ValueError, match="precision"):
        await stream.time_to_positions(when)  # this store never saw a client
    # truncate: everything is projected again, with the same positions
    before = {
        p: [(m.position, m.message_id) for m in await collect(stream.read(p))] for p in range(3)
    }
    await stream.truncate()
    assert await stream.get_max_positions() == {}
    await stream.projector.update_full()
    after = {
        p: [(m.position, m.message_id) for m in await collect(stream.read(p))] for p in range(3)
    }
    assert after == before


async def test_time_to_positions_takes_datetimes(catalog_db: Database, tsclient: TsClient) -> None:
    store = await new_store(catalog_db, tsclient).open()
    stream = store.aggregated_stream("t", SeriesNamePartitioner(1), ["%"])
    await store.append({"a": [[100, 1]]})
    await store.append({"a": [[200, 1]]})
    await stream.projector.update_full()
    when = dt.datetime(1970, 1, 1, 0, 1, 40, 500)  # 100.0005 s rounds up to 101
    assert await stream.time_to_positions(when) == {0: 1}
    assert await stream.time_to_positions(dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) == {0: 0}
    assert await stream.global_position_to_positions(0) == {0: -1}
    assert await stream.global_position_to_positions(1) == {0: 0}


async def test_positions_are_64_bit(catalog_db: Database) -> None:
    store = await new_store(catalog_db).open()
    stream = await store.aggregated_stream("big", SeriesNamePartitioner(1), ["%"]).open()
    await store.append({"a": [[1, 1]]})
    await stream.projector.update_full()
    async with catalog_db.session() as s:  # as if billions of messages came before
        await s.execute(
            "UPDATE tsconnector_agg_stores SET head = $1 WHERE id = $2", 2**40, store.store_id
        )
        await s.execute(
            "UPDATE tsconnector_agg_streams SET projected = $1 WHERE id = $2",
            2**40,
            stream.stream_id,
        )
        await s.execute(
            "UPDATE tsconnector_agg_partitions SET next_position = $1 WHERE stream_id = $2",
            2**35,
            stream.stream_id,
        )
        await s.commit()
    assert await store.append({"a": [[2, 2]]}) == [("a", 2, 2**40 + 1)]
    await stream.projector.update_full()
    [latest] = [m async for m in stream.read_slice(0, 2**35, 10)]
    assert (latest.position, latest.stored_message.global_position) == (2**35, 2**40 + 1)
    assert await stream.global_position_to_positions(2**40 + 1) == {0: 2**35}
    seen: list[int] = []
    sub = stream.subscription("s", lambda m: seen.append(m.position), start_point=None)
    await sub.seek(0, 2**35)
    assert await sub.run_once() == 1
    assert seen == [2**35]
    assert await sub.positions() == {0: 2**35}


async def test_store_truncate_empties_streams(catalog_db: Database) -> None:
    store = await new_store(catalog_db).open()
    stream = store.aggregated_stream("t", SeriesNamePartitioner(2), ["%"])
    await store.append({"a": [[1, 1]], "b": [[1, 1]]})
    await stream.projector.update_full()
    await store.truncate()
    assert await store.head() == 0
    assert await stream.get_max_positions() == {}
    await store.append({"c": [[1, 1]]})
    await stream.projector.update_full()
    found = [[m.position for m in await collect(stream.read(p))] for p in range(2)]
    assert found in ([[0], []], [[], [0]])


def test_like_patterns_mean_what_postgresql_means() -> None:
    assert like_to_regex("cpu.%").fullmatch("cpu.load")
    assert not like_to_regex("cpu.%").fullmatch("CPU.load")
    assert like_to_regex("a_c").fullmatch("abc")
    assert not like_to_regex("a\\_c").fullmatch("abc")
    assert like_to_regex("a\\_c").fullmatch("a_c")
    assert like_to_regex("100\\%").fullmatch("100%")
    assert like_to_regex("x(y)%").fullmatch("x(y)z")


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(min_size=1).filter(lambda s: "\x00" not in s),
    points=st.lists(
        st.tuples(
            st.integers(0, 2**63 - 1),
            st.one_of(
                st.integers(-(2**63), 2**63 - 1),
                st.floats(allow_nan=False),
                st.text().map(lambda s: s.encode("utf-8", "replace").decode("utf-8")),
            ),
        ),
        max_size=20,
    ),
)
def test_point_batches_round_trip_through_the_payload(
    name: str, points: list[tuple[int, Any]]
) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return
    batch = PointBatch.from_points(name, points)
    assert decode_points(name, encode_points(batch)) == batch


def test_point_batch_checks_its_input() -> None:
    with pytest.raises(ValueError, match="timestamps"):
        PointBatch("a", (1, 2), (1,))
    with pytest.raises(TypeError):
        PointBatch("a", (1.5,), (1,))
    with pytest.raises(TypeError):
        PointBatch("a", (1,), (None,))
    with pytest.raises(ValueError):
        PointBatch("", (), ())
    with pytest.raises(ValueError):
        PointBatch.from_points("a", [[1, 2, 3]])
    import numpy as np

    arrays = PointBatch.from_points("a", (np.array([1, 2]), np.array([0.5, 1.5])))
    assert arrays.points() == [[1, 0.5], [2, 1.5]]
    assert SeriesNamePartitioner(7).partition_of("x") == SeriesNamePartitioner(7).partition_of("x")
    with pytest.raises(ValueError):
        SeriesNamePartitioner(0)
