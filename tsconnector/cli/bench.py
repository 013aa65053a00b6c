"""``tsconnector bench``: a quick end-to-end measurement (batched inserts, concurrent queries)."""

from __future__ import annotations

import argparse
import asyncio
import math
import time

from .args import SubParsers, add_connection_args, positive_int
from .connect import open_client, resolve_target
from .errors import CliError

__all__ = ["add_parser", "run"]


def add_parser(sub: SubParsers) -> None:
    """Register ``bench``."""
    b = sub.add_parser(
        "bench",
        help="measure insert and query throughput",
        description="Insert --points points into --series series named bench.N, then run "
        "--queries select last() queries with --concurrency in flight; print the rates.",
    )
    add_connection_args(b, writes=True)
    b.add_argument("--points", type=positive_int, default=200_000)
    b.add_argument("--series", type=positive_int, default=10)
    b.add_argument("--batch", type=positive_int, default=1_000,
                   help="points per series per insert")
    b.add_argument("--queries", type=positive_int, default=5_000)
    b.add_argument("--concurrency", type=positive_int, default=50)


async def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    if args.points < args.series:
        raise CliError(f"--points ({args.points}) must be at least --series ({args.series})")
    target = resolve_target(args)
    async with open_client(target, timeout=args.timeout) as client:
        per_series = args.points // args.series
        base = 1_600_000_000
        started = time.perf_counter()
        for offset in range(0, per_series, args.batch):
            stop = min(per_series, offset + args.batch)
            batch = {
                f"bench.{i}": [[base + t, math.sin(t)] for t in range(offset, stop)]
                for i in range(args.series)
            }
            await client.insert(batch, timeout=args.timeout)
        insert_s = time.perf_counter() - started

        latencies: list[float] = []
        sem = asyncio.Semaphore(args.concurrency)

        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter()
                await client.query(f'select last() from "bench.{i % args.series}"',
                                   timeout=args.timeout)
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.queries)))
        query_s = time.perf_counter() - started
    latencies.sort()
    total = per_series * args.series
    p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)]
    print(f"insert: {total} points in {insert_s:.2f} s = {total / insert_s:,.0f} points/s")
    print(
        f"query:  {args.queries} queries in {query_s:.2f} s = {args.queries / query_s:,.0f} q/s, "
        f"p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"
    )
    return 0
