"""Benchmark sustained ingest: BufferedWriter.add_many against siridb-connector inserts.

The embedded server runs as a subprocess (``python -m tsconnector.server``, memory only
unless ``--data-dir``), so client and server each get a core. Every run sends the same
batches of 1,000 points (10 series x 100 points, floats): the writer gets them through
``add_many`` and is flushed at the end; siridb-connector's ``SiriDBClient.insert`` sends
each batch as it is, one after the other, as an ingest loop without a writer would.
Prints the median of ``--runs`` interleaved runs, points per second and the ratio.

Run: ``python benchmarks/bench_writer.py [--runs 5] [--points 200000] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from siridb.connector import SiriDBClient  # noqa: E402

from tsconnector.client import TsClient  # noqa: E402
from tsconnector.writer import BufferedWriter  # noqa: E402

T0 = 1_699_920_000
BATCH_SERIES = 10
BATCH_POINTS = 100  # per series: 1,000 points per batch

Batch = dict[str, list[tuple[int, float]]]


def make_batches(tag: str, points: int) -> list[Batch]:
    """``points // 1000`` batches of 10 series x 100 points, series names unique per run."""
    rng = random.Random(tag)
    batches = []
    for b in range(points // (BATCH_SERIES * BATCH_POINTS)):
        base = T0 + b * BATCH_POINTS
        batches.append(
            {
                f"bench.{tag}.{s}": [(base + j, rng.random()) for j in range(BATCH_POINTS)]
                for s in range(BATCH_SERIES)
            }
        )
    return batches


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_server(port: int, data_dir: str | None) -> asyncio.subprocess.Process:
    args = [sys.executable, "-m", "tsconnector.server", "--port", str(port)]
    if data_dir:
        args += ["--data-dir", data_dir]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if b"listening" not in line:
        raise RuntimeError(f"server did not start: {line!r}")
    return proc


async def run_writer(port: int, batches: list[Batch], spool: str | None) -> float:
    client = TsClient("iris", "siri", "dbtest", [("127.0.0.1", port)])
    await client.connect()
    try:
        start = time.perf_counter()
        async with BufferedWriter(client, spool_dir=spool) as writer:
            for batch in batches:
                await writer.add_many(batch)
            await writer.flush()
        return time.perf_counter() - start
    finally:
        client.close()
        await client.wait_closed()


async def run_direct(client_class: Any, port: int, batches: list[Batch]) -> float:
    """Seconds to insert every batch with one ``insert`` call each (no writer)."""
    client = client_class("iris", "siri", "dbtest", [("127.0.0.1", port)])
    await client.connect()
    try:
        start = time.perf_counter()
        for batch in batches:
            await client.insert(batch)
        return time.perf_counter() - start
    finally:
        client.close()
        if hasattr(client, "wait_closed"):
            await client.wait_closed()


async def main(runs: int, points: int, data_dir: str | None) -> None:
    port = free_port()
    server = await start_server(port, data_dir)
    spool_root = tempfile.mkdtemp(prefix="bench-writer-")
    cases: dict[str, Callable[[list[Batch]], Awaitable[float]]] = {
        "siridb-connector insert per batch": lambda b: run_direct(SiriDBClient, port, b),
        "TsClient.insert per batch": lambda b: run_direct(TsClient, port, b),
        "BufferedWriter.add_many": lambda b: run_writer(port, b, None),
        "BufferedWriter.add_many + spool": lambda b: run_writer(
            port, b, tempfile.mkdtemp(dir=spool_root)
        ),
    }
    times: dict[str, list[float]] = {label: [] for label in cases}
    try:
        warm = make_batches("warm", 20_000)
        for func in cases.values():
            await func(warm)
        for r in range(runs):
            order = list(cases.items())
            random.shuffle(order)
            for i, (label, func) in enumerate(order):
                batches = make_batches(f"r{r}c{i}", points)
                times[label].append(await func(batches))
    finally:
        server.terminate()
        await server.wait()
    base = statistics.median(times["siridb-connector insert per batch"])
    n = len(make_batches("count", points)) * BATCH_SERIES * BATCH_POINTS
    storage = f"data dir {data_dir}" if data_dir else "memory only"
    print(
        f"\n{n:,} points per run in batches of 1,000 (10 series x 100), median of {runs} "
        f"runs, embedded server subprocess ({storage})\n"
    )
    print(f"{'case':38} {'median s':>9} {'points/s':>12} {'vs siridb-connector':>20}")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:38} {median:9.3f} {n / median:12,.0f} {base / median:19.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--data-dir", default=None, help="let the server persist (fsync)")
    opts = parser.parse_args()
    asyncio.run(main(opts.runs, opts.points, opts.data_dir))
