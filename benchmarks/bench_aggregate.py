"""Benchmark aggregated streams: projector throughput and insert-to-handler latency.

For each catalog backend (a SQLite file, and PostgreSQL when reachable at ``--pg``):

1. **Projector**: ``--messages`` messages of 10 points (64 series) are appended, then
   ``StreamProjector.update_full()`` projects them into 16 partitions, with update
   batches of 100 and of 1,000. Reported as messages/s and points/s (median of
   ``--runs``). The reference in the same run is the floor of that work: one plain
   ``executemany`` INSERT of as many entry rows into a scratch table.
2. **Latency**: ``--samples`` journal writes, one at a time, through
   ``MessageStore.write`` (count, log, insert into the embedded server, commit); each
   point carries the time it was written, and a subscription's handler takes the
   difference. The subscriber runs in this process (woken at once) and in another
   process (PostgreSQL: LISTEN/NOTIFY; SQLite: polling every 0.1 s). Writes start at
   random moments (0-100 ms apart). The reference is the write itself (``store.write``
   from call to return).

Run: ``python benchmarks/bench_aggregate.py [--runs 5] [--messages 20000] [--samples 200]
[--pg postgresql://postgres@127.0.0.1:5432/test]``. The embedded server runs in a
subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import embedded_server, ts_client  # noqa: E402

from tsconnector.aggregate import (  # noqa: E402
    AckStrategy,
    MessageStore,
    SeriesNamePartitioner,
    SubscriptionMessage,
)
from tsconnector.catalog import Database, PostgresqlDB, SqliteDB, connect  # noqa: E402

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
POINTS_PER_MESSAGE = 10
SERIES = 64
PARTITIONS = 16


@contextlib.asynccontextmanager
async def backends(pg_dsn: str) -> AsyncIterator[list[tuple[str, str, Database]]]:
    """``(name, url, db)`` for a SQLite file and (if reachable) a PostgreSQL schema."""
    tmp = tempfile.TemporaryDirectory()
    path = os.path.join(tmp.name, "bench.db")
    found: list[tuple[str, str, Database]] = [
        ("SQLite", f"sqlite:///{path}", await SqliteDB(path).open())
    ]
    schema = f"bench_agg_{secrets.token_hex(4)}"
    pg: Database | None = None
    try:
        pg = await PostgresqlDB(pg_dsn, schema=schema).open()
        found.append(("PostgreSQL", f"{pg_dsn}?schema={schema}", pg))
    except Exception as exc:
        print(f"PostgreSQL not used ({type(exc).__name__}: {exc})")
        pg = None
    try:
        yield found
    finally:
        for _, _, db in found:
            await db.close()
        if pg is not None:
            import asyncpg  # type: ignore[import-untyped]

            conn = await asyncpg.connect(pg_dsn)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()
        tmp.cleanup()


# ------------------------------------------------------------------------ projector


async def fill(store: MessageStore, messages: int) -> None:
    """``messages`` messages of 10 points, 500 per transaction."""
    for start in range(0, messages, 500):
        batch = []
        from tsconnector.aggregate import PointBatch

        for i in range(start, min(start + 500, messages)):
            ts = tuple(range(i * 10, i * 10 + POINTS_PER_MESSAGE))
            batch.append(PointBatch(f"bench.{i % SERIES}", ts, tuple(float(t) for t in ts)))
        await store.append(batch)


async def project_once(db: Database, messages: int, batch: int, tag: str) -> float:
    """Seconds to project ``messages`` fresh messages with update batches of ``batch``."""
    store = await MessageStore(f"proj_{tag}", db).open()
    await fill(store, messages)
    stream = await store.aggregated_stream(
        "all", SeriesNamePartitioner(PARTITIONS), ["%"], update_batch_size=batch
    ).open()
    started = time.perf_counter()
    result = await stream.projector.update_full()
    elapsed = time.perf_counter() - started
    assert result.n_updated_messages == messages, result
    await store.truncate()
    return elapsed


async def raw_insert_once(db: Database, messages: int, tag: str) -> float:
    """Seconds for one executemany INSERT of ``messages`` entry-like rows (the floor)."""
    table = f"bench_raw_{tag}"
    async with db.session() as s:
        await s.execute(
            f"CREATE TABLE {table} (stream_id BIGINT, partition BIGINT, position BIGINT, "
            "global_position BIGINT, occurred_at BIGINT, PRIMARY KEY (stream_id, partition, "
            "position))"
        )
        await s.commit()
    rows = [(1, i % PARTITIONS, i // PARTITIONS, i + 1, i * 10) for i in range(messages)]
    started = time.perf_counter()
    async with db.session() as s:
        await s.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5)", rows)
        await s.commit()
    elapsed = time.perf_counter() - started
    async with db.session() as s:
        await s.execute(f"DROP TABLE {table}")
        await s.commit()
    return elapsed


# -------------------------------------------------------------------------- latency


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency_case(
    db: Database, url: str, hosts: Any, samples: int, remote: bool, tag: str
) -> tuple[list[float], list[float]]:
    """``(write seconds, insert-to-handler seconds)`` for ``samples`` writes."""
    client = await ts_client(hosts)
    store = await MessageStore(f"lat_{tag}", db, client).open()
    stream = await store.aggregated_stream(
        "all", SeriesNamePartitioner(PARTITIONS), ["%"], update_batch_size=100
    ).open()
    got: asyncio.Queue[float] = asyncio.Queue()
    proc = None
    runner = None
    if remote:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "subscriber",
            url,
            store.name,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"

        async def read_lines() -> None:
            assert proc is not None
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                got.put_nowait(float(line))

        reader = asyncio.create_task(read_lines())
    else:

        def handler(message: SubscriptionMessage) -> None:
            got.put_nowait(time.time() - float(message.points.values[0]))

        sub = stream.subscription("lat", handler, ack_strategy=AckStrategy.BATCHED, batch_size=50)
        await sub.open()
        runner = asyncio.create_task(sub.run())
    writes: list[float] = []
    latencies: list[float] = []
    try:
        pause = random.Random(7)
        for i in range(samples + 10):
            # arrivals at random moments, not in step with the subscriber's polling
            await asyncio.sleep(pause.uniform(0, 0.1))
            started = time.time()
            await store.write(f"lat.{i % 8}", [[i + 1, started]])
            writes.append(time.time() - started)
            latencies.append(await asyncio.wait_for(got.get(), 30))
    finally:
        if runner is not None:
            sub.stop()
            await runner
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.write(b"stop\n")
            await proc.wait()
            reader.cancel()
        client.close()
        await client.wait_closed()
    return writes[10:], latencies[10:]  # the first ten warm up


async def subscriber(url: str, store_name: str) -> None:
    """The remote subscriber: prints each message's insert-to-handler latency."""
    db = await connect(url).open()
    store = await MessageStore(store_name, db).open()
    stream = await store.aggregated_stream(
        "all", SeriesNamePartitioner(PARTITIONS), ["%"], update_batch_size=100
    ).open()

    def handler(message: SubscriptionMessage) -> None:
        print(time.time() - float(message.points.values[0]), flush=True)

    sub = stream.subscription("lat", handler, ack_strategy=AckStrategy.BATCHED, batch_size=50)
    await sub.open()
    runner = asyncio.create_task(sub.run())
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    sub.stop()
    await runner
    await db.close()


# ----------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    runs = max(5, args.runs)
    with embedded_server() as server:
        async with backends(args.pg) as dbs:
            print(
                f"\nProjector: {args.messages:,} messages x {POINTS_PER_MESSAGE} points, "
                f"{SERIES} series, {PARTITIONS} partitions (median of {runs} runs)\n"
            )
            print("| backend | case | seconds | messages/s | points/s | vs raw INSERT |")
            print("|---|---|---:|---:|---:|---:|")
            for name, _, db in dbs:
                times: dict[str, list[float]] = {"raw": [], "100": [], "1000": []}
                for r in range(runs):  # interleaved
                    times["raw"].append(await raw_insert_once(db, args.messages, f"{r}"))
                    times["100"].append(await project_once(db, args.messages, 100, f"a{r}"))
                    times["1000"].append(await project_once(db, args.messages, 1000, f"b{r}"))
                raw = statistics.median(times["raw"])
                for case, label in (
                    ("raw", "raw INSERT of the entries"),
                    ("100", "update_full, batch 100"),
                    ("1000", "update_full, batch 1000"),
                ):
                    t = statistics.median(times[case])
                    n = args.messages / t
                    print(
                        f"| {name} | {label} | {t:.3f} | {n:,.0f} | "
                        f"{n * POINTS_PER_MESSAGE:,.0f} | {t / raw:.1f}x |"
                    )
            print(
                f"\nLatency: {args.samples} journal writes one at a time into the embedded "
                "server; insert-to-handler\n"
            )
            print(
                "| backend | subscriber | write p50 ms | write p99 ms | "
                "handler p50 ms | handler p99 ms |"
            )
            print("|---|---|---:|---:|---:|---:|")
            for name, url, db in dbs:
                for remote in (False, True):
                    where = "other process" if remote else "same process"
                    if remote:
                        where += " (NOTIFY)" if db.supports_notify else " (poll 0.1 s)"
                    writes, lat = await latency_case(
                        db,
                        url,
                        server.hostlist,
                        args.samples,
                        remote,
                        f"{int(remote)}{secrets.token_hex(2)}",
                    )
                    print(
                        f"| {name} | {where} | {1e3 * pct(writes, 0.5):.1f} | "
                        f"{1e3 * pct(writes, 0.99):.1f} | {1e3 * pct(lat, 0.5):.1f} | "
                        f"{1e3 * pct(lat, 0.99):.1f} |"
                    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "subscriber":
        asyncio.run(subscriber(sys.argv[2], sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--pg", default=os.environ.get("TSCONNECTOR_TEST_PG", PG_DSN))
    asyncio.run(main(parser.parse_args()))
