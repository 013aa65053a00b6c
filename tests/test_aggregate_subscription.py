"""Subscriptions: acknowledgement, failures, retries, dead letters, start points, leases,
the runner, and three competing worker processes with one SIGKILLed."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from aggregate_helpers import SHARED, Workers
from catalog_backends import Backend
from shared_helpers import wait_until

from tsconnector.aggregate import (
    AckStrategy,
    AggregatedStream,
    MessageStore,
    SeriesNamePartitioner,
    StartAtNextMessage,
    StartAtPointInTime,
    SubscriptionMessage,
)
from tsconnector.catalog import Database

_names = itertools.count()


async def make_stream(db: Database, n: int = 1, **kw: Any) -> AggregatedStream:
    store = await MessageStore(f"sub{next(_names)}", db).open()
    return await store.aggregated_stream("all", SeriesNamePartitioner(n), ["%"], **kw).open()


async def fill(stream: AggregatedStream, count: int, series: str = "a", start: int = 0) -> None:
    for i in range(start, start + count):
        await stream.store.append({series: [[i, i]]})


@pytest.mark.parametrize("strategy", [AckStrategy.SINGLE, AckStrategy.BATCHED])
async def test_a_failing_first_message_leaves_the_stored_position(
    catalog_db: Database, strategy: AckStrategy
) -> None:
    stream = await make_stream(catalog_db)
    await fill(stream, 12)
    seen: list[int] = []
    failing = {5}

    def handler(message: SubscriptionMessage) -> None:
        if message.position in failing:
            raise RuntimeError("boom")
        seen.append(message.position)

    sub = stream.subscription(
        "s", handler, batch_size=5, ack_strategy=strategy, max_attempts=1, dead_letter=False
    )
    assert await sub.run_once() == 5  # positions 0..4; position 5 fails as a batch's first
    assert await sub.positions() == {0: 4}
    assert await sub.run_once() == 0  # tried again, fails again: never moves back
    assert await sub.positions() == {0: 4}
    failing.clear()
    assert await sub.run_once() == 7
    assert seen == [0, 1, 2, 3, 4, *range(5, 12)]
    assert await sub.positions() == {0: 11}
    assert (await sub.stats()).lag == {0: 0}


async def test_a_failure_mid_batch_keeps_what_came_before(catalog_db: Database) -> None:
    stream = await make_stream(catalog_db)
    await fill(stream, 6)
    await catalog_db.open()
    async with catalog_db.session() as s:
        await s.execute("CREATE TABLE sub_effects (pos INTEGER NOT NULL)")
        await s.commit()

    async def handler(message: SubscriptionMessage) -> None:
        await message.session.execute("INSERT INTO sub_effects (pos) VALUES ($1)", message.position)
        if message.position == 3:
            raise RuntimeError("boom")

    sub = stream.subscription(
        "s",
        handler,
        batch_size=10,
        ack_strategy=AckStrategy.BATCHED,
        max_attempts=2,
        backoff=0.001,
        dead_letter=False,
    )
    assert await sub.run_once() == 3
    assert await sub.positions() == {0: 2}
    async with catalog_db.session(readonly=True) as s:
        rows = await s.fetch("SELECT pos FROM sub_effects ORDER BY pos")
    assert [r["pos"] for r in rows] == [0, 1, 2]  # the failed attempts' writes rolled back
    assert (await sub.stats()).failed_attempts == 2


@pytest.mark.parametrize("strategy", [AckStrategy.SINGLE, AckStrategy.BATCHED])
async def test_retries_then_dead_letter(catalog_db: Database, strategy: AckStrategy) -> None:
    stream = await make_stream(catalog_db)
    await fill(stream, 4)
    attempts: dict[int, int] = {}

    def handler(message: SubscriptionMessage) -> None:
        attempts[message.position] = message.attempt
        if message.position == 1 or (message.position == 2 and message.attempt < 2):
            raise ValueError(f"bad {message.position}")

    sub = stream.subscription(
        "s", handler, batch_size=10, ack_strategy=strategy, max_attempts=3, backoff=0.001
    )
    assert await sub.run_once() == 4
    assert attempts == {0: 1, 1: 3, 2: 2, 3: 1}
    letters = await sub.dead_letters()
    assert [(d["partition"], d["position"], d["attempts"]) for d in letters] == [(0, 1, 3)]
    assert "ValueError: bad 1" in letters[0]["error"]
    stats = await sub.stats()
    assert (stats.handled, stats.dead_lettered, stats.failed_attempts) == (4, 1, 4)
    assert await sub.positions() == {0: 3}


async def test_start_points_seek_and_reset(catalog_db: Database) -> None:
    stream = await make_stream(catalog_db, 2)
    await stream.store.append({"a": [[10, 1]], "b": [[10, 1]]})
    await stream.store.append({"a": [[20, 1]], "b": [[30, 1]]})
    await stream.projector.update_full()
    got: list[tuple[int, int]] = []

    def handler(message: SubscriptionMessage) -> None:
        got.append((message.partition, message.position))

    nxt = stream.subscription("next", handler, start_point=StartAtNextMessage())
    assert await nxt.run_once() == 0
    await stream.store.append({"a": [[40, 1]]})
    assert await nxt.run_once() == 1
    timed = stream.subscription("timed", handler, start_point=StartAtPointInTime(20))
    got.clear()
    assert await timed.run_once() == 3  # a@20, b@30, a@40
    parts = SeriesNamePartitioner(2)
    order = [("a", 10), ("b", 10), ("a", 20), ("b", 30), ("a", 40)]
    model: dict[int, list[int]] = {}
    for series, ts in order:
        model.setdefault(parts.partition_of(series), []).append(ts)
    expected = {(p, pos) for p, times in model.items() for pos, ts in enumerate(times) if ts >= 20}
    assert sorted(got) == sorted(expected)
    when = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(ValueError, match="precision"):
        await stream.subscription("dt", handler, start_point=StartAtPointInTime(when)).open()
    pa = parts.partition_of("a")
    await timed.seek(pa, 0)
    got.clear()
    assert await timed.run_once() == len(model[pa])
    assert got == [(pa, i) for i in range(len(model[pa]))]
    await timed.reset()
    assert await timed.run_once() == 3
    await timed.reset(StartAtNextMessage())
    assert await timed.run_once() == 0


async def test_a_held_partition_lease_keeps_other_workers_out(catalog_db: Database) -> None:
    stream = await make_stream(catalog_db)
    await fill(stream, 3)
    release = asyncio.Event()
    entered = asyncio.Event()
    first_seen: list[int] = []
    second_seen: list[int] = []

    async def slow(message: SubscriptionMessage) -> None:
        first_seen.append(message.position)
        entered.set()
        await release.wait()

    first = stream.subscription("s", slow, batch_size=1, worker_id="w1", lease_seconds=60)
    second = stream.subscription(
        "s", lambda m: second_seen.append(m.position), worker_id="w2", lease_seconds=60
    )
    task = asyncio.create_task(first.run_once())
    await asyncio.wait_for(entered.wait(), 30)
    assert await second.run_once() == 0
    assert second._stats.lease_conflicts == 1
    release.set()
    assert await asyncio.wait_for(task, 30) == 3
    assert first_seen == [0, 1, 2]
    assert second_seen == []


async def test_an_expired_lease_is_taken_over(catalog_db: Database) -> None:
    stream = await make_stream(catalog_db)
    await fill(stream, 2)
    dead = stream.subscription("s", lambda m: None, worker_id="dead", lease_seconds=0.2)
    await dead.open()
    from tsconnector.aggregate import leases

    async with catalog_db.session() as s:  # a worker that took the lease and died
        assert await leases.take(s, dead._scope, "0", "dead", 0.2)
        await s.commit()
    seen: list[int] = []
    alive = stream.subscription("s", lambda m: seen.append(m.position), worker_id="alive")
    assert await alive.run_once() == 0  # still held

    async def taken_over() -> bool:
        await alive.run_once()
        return seen == [0, 1]

    await wait_until(taken_over, 30, "the lease to expire")


async def test_handler_writes_roll_back_when_the_ack_loses_a_race(catalog_db: Database) -> None:
    stream = await make_stream(catalog_db)
    await fill(stream, 3)
    async with catalog_db.session() as s:
        await s.execute("CREATE TABLE sub_once (pos INTEGER PRIMARY KEY)")
        await s.commit()
    raced = False

    async def handler(message: SubscriptionMessage) -> None:
        nonlocal raced
        if not raced:  # a stalled worker: another one handled position 0 meanwhile
            raced = True
            async with catalog_db.session() as other:
                await other.execute(
                    "INSERT INTO tsconnector_agg_positions (subscription_id, partition, "
                    "position) VALUES ($1, 0, 0)",
                    sub.subscription_id,
                )
                await other.commit()
        await message.session.execute("INSERT INTO sub_once (pos) VALUES ($1)", message.position)

    sub = stream.subscription("s", handler)
    await sub.open()
    assert await sub.run_once() == 0  # its acknowledgement failed: nothing handled
    assert await sub.run_once() == 2
    async with catalog_db.session(readonly=True) as s:
        rows = await s.fetch("SELECT pos FROM sub_once ORDER BY pos")
    assert [r["pos"] for r in rows] == [1, 2]  # the losing attempt's write was rolled back
    assert await sub.positions() == {0: 2}


async def test_run_wakes_on_new_data_and_stops(catalog_backend: Backend) -> None:
    db = await catalog_backend.new_db().open()
    stream = await make_stream(db, 4, update_batch_size=7)
    got: asyncio.Queue[int] = asyncio.Queue()
    sub = stream.subscription(
        "live", lambda m: got.put_nowait(m.stored_message.global_position), poll_interval=30
    )
    runner = asyncio.create_task(sub.run())
    await fill(stream, 1)  # same process: woken at once on every backend
    assert await asyncio.wait_for(got.get(), 10) == 1
    if catalog_backend.shareable:  # another "process" writes: NOTIFY on PostgreSQL
        other = catalog_backend.new_db()
        await MessageStore(stream.store.name, other).append({"x": [[1, 1]]})
        if db.supports_notify:
            assert await asyncio.wait_for(got.get(), 10) == 2
    sub.stop()
    await asyncio.wait_for(runner, 10)
    runner = asyncio.create_task(sub.run())
    await asyncio.sleep(0)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    async with db.session(readonly=True) as s:
        assert await s.fetchval("SELECT count(*) FROM tsconnector_agg_leases") == 0


@pytest.mark.slow
@SHARED
async def test_three_workers_process_every_point_once_while_one_is_killed(
    catalog_backend: Backend, tmp_path: Path
) -> None:
    db = await catalog_backend.new_db().open()
    async with db.session() as s:
        await s.execute(
            "CREATE TABLE agg_results (seq "
            + ("BIGSERIAL" if db.dialect == "postgresql" else "INTEGER")
            + " PRIMARY KEY, message_id TEXT NOT NULL UNIQUE, part INTEGER NOT NULL, "
            "pos INTEGER NOT NULL, n_points INTEGER NOT NULL, worker TEXT NOT NULL)"
        )
        await s.commit()
    store = await MessageStore("work", db).open()
    await store.aggregated_stream("all", SeriesNamePartitioner(16), ["%"]).open()
    series = [f"sensor.{i}" for i in range(64)]
    for round_ in range(25):  # 25 x 64 messages x 62/63 points = 100,000 points
        batch = {}
        for k, name in enumerate(series):
            n = 63 if (round_ * 64 + k) < 1600 * 0.5 else 62
            batch[name] = [[round_ * 100 + j, j] for j in range(n)]
        await store.append(batch)
    assert sum((await store.stream_counts()).values()) == 100_000
    marker = tmp_path / "hung"
    url = catalog_backend.url
    workers = Workers()
    try:
        victim = await workers.start(
            ["subscribe", url, "work", "all", "16", "w", "40", str(marker)]
        )
        others = [
            await workers.start(["subscribe", url, "work", "all", "16", "w", "0", "-"])
            for _ in range(2)
        ]
        workers.tell([victim])  # go; the others once it is at work, so it surely hangs

        async def started() -> bool:
            async with db.session(readonly=True) as s:
                return int(await s.fetchval("SELECT count(*) FROM agg_results")) > 0

        await wait_until(started, 60, "the victim to start")
        workers.tell(others)

        async def hung() -> bool:
            return marker.exists()

        await wait_until(hung, 120, "the victim to hang mid-batch")
        os.kill(victim.pid, signal.SIGKILL)
        await victim.wait()
        restarted = await workers.start(["subscribe", url, "work", "all", "16", "w", "0", "-"])
        workers.tell([restarted])  # go

        async def all_done() -> bool:
            async with db.session(readonly=True) as s:
                n = await s.fetchval("SELECT count(*) FROM agg_results")
            return int(n) == 25 * 64

        await wait_until(all_done, 180, "every message to be handled")
        live = [*others, restarted]
        workers.tell(live)  # stop
        results = await workers.results(live)
    finally:
        workers.kill()
    async with db.session(readonly=True) as s:
        rows = await s.fetch("SELECT part, pos, n_points, worker FROM agg_results ORDER BY seq")
    assert sum(int(r["n_points"]) for r in rows) == 100_000
    by_part: dict[int, list[int]] = {}
    for r in rows:
        by_part.setdefault(int(r["part"]), []).append(int(r["pos"]))
    assert len(by_part) == 16
    for positions in by_part.values():  # in order, each once, none missing
        assert positions == list(range(len(positions)))
    workers_seen = {r["worker"] for r in rows}
    assert f"pid{victim.pid}" in workers_seen  # it did work before it died
    assert len(workers_seen) >= 3
    assert all(r["handled"] >= 0 for r in results)
