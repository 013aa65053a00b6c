"""Benchmark sustained ingest: BufferedWriter.add_many against direct inserts.

Every case delivers the same points, given as batches of 1,000 points (10 series x 100
points, floats), as an ingest loop receives them:

- ``siridb-connector sequential``: ``SiriDBClient.insert`` of each batch, one after the
  other (an ingest loop without a writer);
- ``TsClient sequential``: the same with ``TsClient.insert``;
- ``TsClient best direct``: the same batches with ``TsClient.insert``, the best of 1, 4
  and 16 inserts in flight (measured in the same run): the fastest direct insert of them;
- ``TsClient merged``: for reference, the batches merged by the caller into inserts of
  10 k / 50 k / 100 k points with 1 or 4 in flight, merging timed (the best of them):
  what a caller gets by batching itself, without a spool;
- ``BufferedWriter`` and ``BufferedWriter + spool``: ``add_many`` of each batch, then
  ``flush()`` (the writer's own batching, several batches in flight; with the spool, every
  batch is fsynced to disk before it is sent).

Input is lists of ``(ts, value)`` pairs (``--input lists``, default) or numpy arrays
(``--input numpy``). The server is the embedded one in a subprocess (memory only unless
``--data-dir``) or ``--hosts``. Cases run interleaved; medians of ``--runs``.

Run: ``python benchmarks/bench_writer.py [--runs 5] [--points 1000000] [--input lists]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

from tsconnector.writer import BufferedWriter

T0 = 1_699_920_000
BATCH_SERIES = 10
BATCH_POINTS = 100  # per series: 1,000 points per batch
#: In-flight counts tried for "best direct" (the batches as they are).
DIRECT = (1, 4, 16)
#: Strategies tried for "merged": (points per insert, inserts in flight).
MERGED = [(10_000, 1), (10_000, 4), (50_000, 1), (50_000, 4), (100_000, 1), (100_000, 4)]

Batch = dict[str, Any]


def make_batches(tag: str, points: int, numpy: bool) -> list[Batch]:
    """``points // 1000`` batches of 10 series x 100 points, series names unique per run."""
    import numpy as np

    rng = np.random.default_rng(abs(hash(tag)) % 2**32)
    batches = []
    for b in range(points // (BATCH_SERIES * BATCH_POINTS)):
        ts = np.arange(T0 + b * BATCH_POINTS, T0 + (b + 1) * BATCH_POINTS, dtype=np.int64)
        batch: Batch = {}
        for s in range(BATCH_SERIES):
            values = rng.random(BATCH_POINTS)
            name = f"bench.{tag}.{s}"
            batch[name] = (ts, values) if numpy else list(zip(ts.tolist(), values.tolist()))
        batches.append(batch)
    return batches


def merge(batches: list[Batch], per_insert: int) -> list[Batch]:
    """The batches joined into inserts of about ``per_insert`` points (one run per series)."""
    import numpy as np

    k = max(1, per_insert // (BATCH_SERIES * BATCH_POINTS))
    out = []
    for i in range(0, len(batches), k):
        merged: dict[str, list[Any]] = {}
        for batch in batches[i : i + k]:
            for name, points in batch.items():
                merged.setdefault(name, []).append(points)
        out.append({
            name: (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            if isinstance(parts[0], tuple) else [pt for p in parts for pt in p]
            for name, parts in merged.items()
        })
    return out


async def insert_all(client: Any, inserts: list[Batch], in_flight: int) -> float:
    """Seconds to insert every payload with ``in_flight`` inserts outstanding."""
    queue = iter(inserts)

    async def worker() -> None:
        for data in queue:
            await client.insert(data)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - start


async def run_writer(client: Any, batches: list[Batch], spool: str | None) -> float:
    """Seconds from the first ``add_many`` until ``flush()`` returned (every point
    acknowledged); opening the spool and closing are not timed (once per process)."""
    async with BufferedWriter(client, spool_dir=spool) as writer:
        start = time.perf_counter()
        for batch in batches:
            await writer.add_many(batch)
        await writer.flush()
        seconds = time.perf_counter() - start
        stats = writer.stats()
    if stats.failed or stats.sent != stats.added:
        raise RuntimeError(f"the writer did not deliver everything: {stats}")
    return seconds


async def run_best_direct(client: Any, batches: list[Batch]) -> tuple[float, str]:
    """The fastest direct insert of the batches as they are (seconds, in flight)."""
    best = (float("inf"), "")
    for in_flight in DIRECT:
        await client.query(f"drop series /^{_prefix(batches)}.*/ set ignore_threshold true")
        best = min(best, (await insert_all(client, batches, in_flight), f"x {in_flight}"))
    return best


async def run_merged(client: Any, batches: list[Batch]) -> tuple[float, str]:
    """The fastest caller-side batching (seconds, description); merging is timed too."""
    best = (float("inf"), "")
    for per_insert, in_flight in MERGED:
        await client.query(f"drop series /^{_prefix(batches)}.*/ set ignore_threshold true")
        start = time.perf_counter()
        await insert_all(client, merge(batches, per_insert), in_flight)
        seconds = time.perf_counter() - start
        best = min(best, (seconds, f"{per_insert // 1000} k x {in_flight}"))
    return best


def _prefix(batches: list[Batch]) -> str:
    name = next(iter(batches[0]))
    return name.rsplit(".", 1)[0].replace(".", "[.]") + "[.]"


@contextlib.contextmanager
def server(args: argparse.Namespace) -> Iterator[c.Hostlist]:
    if args.hosts:
        yield c.parse_hosts(args.hosts)
        return
    argv = [c.PYTHON, "-m", "tsconnector.server", "--host", "127.0.0.1", "--port", "0"]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    proc = c.ServerProcess(argv)
    try:
        yield proc.hostlist
    finally:
        proc.stop()


async def main(args: argparse.Namespace) -> None:
    numpy = args.input == "numpy"
    spool_root = tempfile.mkdtemp(prefix="bench-writer-")
    how: dict[str, list[str]] = {"direct": [], "merged": []}
    with server(args) as hosts:
        ts = await c.ts_client(hosts, args)
        siri = await c.siri_client(hosts, args)

        async def best(batches: list[Batch]) -> float:
            seconds, chosen = await run_best_direct(ts, batches)
            how["direct"].append(chosen)
            return seconds

        async def merged(batches: list[Batch]) -> float:
            seconds, chosen = await run_merged(ts, batches)
            how["merged"].append(chosen)
            return seconds

        cases: dict[str, Callable[[list[Batch]], Awaitable[float]]] = {
            "siridb-connector sequential": lambda b: insert_all(
                siri, [{k: _as_lists(v) for k, v in x.items()} for x in b] if numpy else b, 1),
            "TsClient sequential": lambda b: insert_all(ts, b, 1),
            "TsClient best direct": best,
            "TsClient merged (reference)": merged,
            "BufferedWriter": lambda b: run_writer(ts, b, None),
            "BufferedWriter + spool": lambda b: run_writer(ts, b, tempfile.mkdtemp(dir=spool_root)),
        }
        times: dict[str, list[float]] = {label: [] for label in cases}
        try:
            warm = make_batches("warm", 20_000, numpy)
            for func in cases.values():
                await func(warm)
            for chosen in how.values():
                chosen.clear()
            for r in range(args.runs):
                order = list(cases.items())
                random.shuffle(order)
                for i, (label, func) in enumerate(order):
                    batches = make_batches(f"r{r}c{i}", args.points, numpy)
                    times[label].append(await func(batches))
                    await ts.query(f"drop series /^{_prefix(batches)}.*/ "
                                   "set ignore_threshold true", timeout=300)
                print(f"  run {r + 1}: " + ", ".join(
                    f"{label} {args.points / t[-1] / 1e6:.2f}" for label, t in times.items()
                ) + " M points/s", flush=True)
        finally:
            await c.close_client(ts)
            await c.close_client(siri)
    report(args, times, how)


def _as_lists(points: Any) -> Any:
    """siridb-connector needs lists: numpy input is converted (in the timing, as its users must)."""
    if isinstance(points, tuple):
        return [list(p) for p in zip(points[0].tolist(), points[1].tolist())]
    return points


def report(
    args: argparse.Namespace, times: dict[str, list[float]], how: dict[str, list[str]]
) -> None:
    n = args.points
    base = statistics.median(times["siridb-connector sequential"])
    direct = statistics.median(times["TsClient best direct"])
    where = args.hosts or ("embedded server subprocess, " +
                           (f"data dir {args.data_dir}" if args.data_dir else "memory only"))
    print(f"\n{n:,} points per run given as batches of 1,000 (10 series x 100), "
          f"{args.input} input, median (min-max) of {args.runs} runs, {where}")
    print(f"best direct per run (inserts in flight): {', '.join(how['direct'])}; merged "
          f"(points per insert x in flight): {', '.join(how['merged'])}")
    rows = []
    for label, values in times.items():
        med = statistics.median(values)
        rates = sorted(n / v / 1e6 for v in values)
        rows.append([label, f"{n / med / 1e6:.2f} ({rates[0]:.2f}-{rates[-1]:.2f})",
                     f"{base / med:.2f}x", f"{direct / med:.2f}x"])
    c.print_table("ingest", ["case", "M points/s", "vs siridb-connector", "vs best direct"],
                  rows)
    spool = statistics.median(times["BufferedWriter + spool"])
    print("\ntargets:")
    print(c.verdict("writer + spool vs siridb-connector sequential", base / spool, 2))
    print(c.verdict("writer + spool vs TsClient best direct", direct / spool, 0.9))


if __name__ == "__main__":
    parser = c.base_parser(__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--input", choices=("lists", "numpy"), default="lists")
    parser.add_argument("--data-dir", default=None, help="let the embedded server persist (fsync)")
    asyncio.run(main(parser.parse_args()))
