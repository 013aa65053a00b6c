"""A separate OS process working on an aggregated stream, started by the aggregate tests.

``python tests/aggregate_worker.py MODE URL STORE [ARGS...]`` opens the catalog at URL,
prints ``ready``, waits for a line on stdin (so workers start together, without
sleeps), works, and prints one JSON line with its result. Modes:

- ``project URL STORE STREAM NPART``: run the stream's projector until a second line
  arrives on stdin; reports how many messages this process projected.
- ``subscribe URL STORE STREAM NPART SUB HANG_AFTER MARKER``: run a subscription (BATCHED,
  batch 20, leases of 2 s) whose handler records each message in table
  ``agg_results`` through the acknowledging session, until a second line arrives. With
  ``HANG_AFTER`` > 0 the handler hangs (mid-transaction) after that many messages and
  creates the file MARKER, so the test can SIGKILL the process at a known point.
- ``journal URL STORE PORT CRASH_STEP SERIES N``: write N points of SERIES through the
  journal of a store whose client talks to 127.0.0.1:PORT; the journal hook SIGKILLs
  this process at CRASH_STEP (``logged`` or ``inserted``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tsconnector.aggregate import (
    AckStrategy,
    MessageStore,
    SeriesNamePartitioner,
    SubscriptionMessage,
)
from tsconnector.catalog import Database, connect
from tsconnector.client import TsClient


async def _stop_line() -> None:
    await asyncio.to_thread(sys.stdin.readline)


async def project(db: Database, store_name: str, stream_name: str, n: int) -> dict[str, Any]:
    store = await MessageStore(store_name, db).open()
    stream = await store.aggregated_stream(stream_name, SeriesNamePartitioner(n), ["%"]).open()
    projector = stream.projector
    projector.poll_interval = 0.05
    counted = 0
    original = projector._project_batch

    async def counting() -> tuple[int, bool]:
        nonlocal counted
        done, more = await original()
        counted += max(done, 0)
        return done, more

    projector._project_batch = counting  # type: ignore[method-assign]
    print("ready", flush=True)
    await _stop_line()  # go
    runner = asyncio.create_task(projector.run())
    await _stop_line()  # stop
    projector.stop()
    await runner
    return {"projected": counted}


async def subscribe(
    db: Database,
    store_name: str,
    stream_name: str,
    n: int,
    sub_name: str,
    hang_after: int,
    marker: str,
) -> dict[str, Any]:
    store = await MessageStore(store_name, db).open()
    stream = await store.aggregated_stream(stream_name, SeriesNamePartitioner(n), ["%"]).open()
    worker = f"pid{os.getpid()}"
    handled = 0

    async def handler(message: SubscriptionMessage) -> None:
        nonlocal handled
        await message.session.execute(
            "INSERT INTO agg_results (message_id, part, pos, n_points, worker) "
            "VALUES ($1, $2, $3, $4, $5)",
            message.message_id,
            message.partition,
            message.position,
            len(message.points),
            worker,
        )
        handled += 1
        if hang_after and handled >= hang_after:
            await asyncio.to_thread(Path(marker).write_text, worker)
            await asyncio.Event().wait()  # hangs until SIGKILL

    sub = stream.subscription(
        sub_name,
        handler,
        batch_size=20,
        ack_strategy=AckStrategy.BATCHED,
        lease_seconds=2.0,
        poll_interval=0.05,
        worker_id=worker,
    )
    await sub.open()
    print("ready", flush=True)
    await _stop_line()
    runner = asyncio.create_task(sub.run())
    await _stop_line()
    sub.stop()
    await runner
    return {"handled": handled, "stats": (await sub.stats()).handled}


async def journal(
    db: Database, store_name: str, port: int, step: str, series: str, n: int
) -> dict[str, Any]:
    client = TsClient("iris", "siri", "dbtest", [("127.0.0.1", port)])
    await client.connect()
    store = MessageStore(store_name, db, client, lease_seconds=2.5, insert_timeout=1.0)
    await store.open()

    def hook(at: str) -> None:
        if at == step:
            os.kill(os.getpid(), signal.SIGKILL)

    store._journal_hook = hook
    print("ready", flush=True)
    await _stop_line()
    await store.write(series, [[i, float(i)] for i in range(1, n + 1)])
    return {"crashed": False}


async def main(argv: list[str]) -> dict[str, Any]:
    mode, url, store, *args = argv
    db = connect(url)
    await db.open()
    async with db:
        if mode == "project":
            return await project(db, store, args[0], int(args[1]))
        if mode == "subscribe":
            return await subscribe(db, store, args[0], int(args[1]), args[2], int(args[3]), args[4])
        if mode == "journal":
            return await journal(db, store, int(args[0]), args[1], args[2], int(args[3]))
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
