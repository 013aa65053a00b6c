"""The projector: one position per message from racing processes, no skipped late commit,
and the position lookups against a reference model."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from aggregate_helpers import SHARED, Workers
from catalog_backends import Backend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_helpers import wait_until

from tsconnector.aggregate import MessageStore, SeriesNamePartitioner
from tsconnector.catalog import Database


async def check_stream_invariants(db: Database, store: MessageStore, stream_id: int) -> int:
    """Every message once, positions 0..n-1 per partition, in global order; returns count."""
    async with db.session(readonly=True) as s:
        rows = await s.fetch(
            "SELECT partition, position, global_position FROM tsconnector_agg_entries "
            "WHERE stream_id = $1 ORDER BY partition, position",
            stream_id,
        )
        head = await store.head()
    gps = [int(r["global_position"]) for r in rows]
    assert sorted(gps) == list(range(1, head + 1))
    by_part: dict[int, list[tuple[int, int]]] = {}
    for r in rows:
        by_part.setdefault(int(r["partition"]), []).append(
            (int(r["position"]), int(r["global_position"]))
        )
    for entries in by_part.values():
        assert [p for p, _ in entries] == list(range(len(entries)))
        assert [g for _, g in entries] == sorted(g for _, g in entries)
    return len(rows)


@pytest.mark.slow
@SHARED
async def test_four_projector_processes_give_each_message_one_position(
    catalog_backend: Backend,
) -> None:
    db = await catalog_backend.new_db().open()
    store = await MessageStore("race", db).open()
    stream = await store.aggregated_stream("all", SeriesNamePartitioner(8), ["%"]).open()
    workers = Workers()
    try:
        for _ in range(4):
            await workers.start(["project", catalog_backend.url, "race", "all", "8"])
        workers.tell()  # all start together
        for i in range(20):  # written while the projectors run
            await store.append({f"s{(i * 50 + j) % 37}": [[i * 50 + j, j]] for j in range(50)})
        await wait_until(
            lambda: _caught_up(stream), 120, "the projectors to catch up with the store"
        )
        workers.tell()  # stop
        results = await workers.results()
    finally:
        workers.kill()
    total = await check_stream_invariants(db, store, stream.stream_id)
    assert total == await store.head() == 20 * 37
    assert sum(r["projected"] for r in results) == total


async def _caught_up(stream: Any) -> bool:
    return bool(await stream.projector.pending() == 0)


@SHARED
async def test_a_transaction_held_open_across_projector_runs_is_still_projected(
    catalog_backend: Backend,
) -> None:
    db = await catalog_backend.new_db().open()
    store = await MessageStore("late", db).open()
    stream = store.aggregated_stream("all", SeriesNamePartitioner(2), ["%"])
    await store.append({"early": [[1, 1]]})
    assert (await stream.projector.update_full()).n_updated_messages == 1
    late = await db.get_session()
    try:
        [held] = await store.append({"late": [[2, 2]]}, session=late)
        assert held.global_position == 2
        other = catalog_backend.new_db()  # another "process": its own connections
        other_store = MessageStore("late", other)
        # A writer behind the open transaction waits for it (positions follow commits).
        behind = asyncio.create_task(other_store.append({"behind": [[3, 3]]}))
        for _ in range(30):
            result = await stream.projector.update_full()
            assert result.n_updated_messages == 0
        assert not behind.done()
        await late.commit()
    finally:
        await db.put_session(late)
    assert await asyncio.wait_for(behind, 30) == [("behind", 1, 3)]
    assert (await stream.projector.update_full()).n_updated_messages == 2
    assert await check_stream_invariants(db, store, stream.stream_id) == 3


_model_stores = itertools.count()
messages_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 50)),
    min_size=0,
    max_size=30,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    messages=messages_strategy,
    batch=st.integers(1, 7),
    queries=st.lists(st.integers(-1, 55), min_size=1, max_size=8),
)
async def test_position_lookups_agree_with_a_model(
    catalog_db: Database, messages: list[tuple[str, int]], batch: int, queries: list[int]
) -> None:
    store = await MessageStore(f"model{next(_model_stores)}", catalog_db).open()
    parts = SeriesNamePartitioner(3)
    stream = store.aggregated_stream("m", parts, ["%"], update_batch_size=batch)
    # the model: positions per partition in global order
    model: dict[int, list[tuple[int, int]]] = {}  # partition -> [(global_position, time)]
    for i, (series, ts) in enumerate(messages, 1):
        await store.append({series: [[ts, i], [ts + 3, i]]})
        model.setdefault(parts.partition_of(series), []).append((i, ts))
        if i % 11 == 0:  # project part of the way now and then
            await stream.projector.update_full()
    await stream.projector.update_full()
    for q in queries:
        expected_time = {
            p: next((pos for pos, (_, t) in enumerate(msgs) if t >= q), len(msgs))
            for p, msgs in model.items()
        }
        assert await stream.time_to_positions(q) == expected_time
        expected_gp = {
            p: max((pos for pos, (g, _) in enumerate(msgs) if g <= q), default=-1)
            for p, msgs in model.items()
        }
        assert await stream.global_position_to_positions(q) == expected_gp
