"""Benchmark the embedded server: ingest 1 M points, then ``select mean(1h)`` over them.

Run: ``python benchmarks/bench_server.py [--runs N] [--series 100] [--per-series 10000]
[--batch 10000] [--in-flight 4] [--modes memory,data-dir]``.

Each run starts a fresh server subprocess (``python -m tsconnector.server``), so the
memory measured is the server's own: in memory only, and with ``--data-dir`` in a
temporary directory (write-ahead log fsynced before each insert is acknowledged). One
TsClient inserts 100 series x 10,000 points (numpy arrays) in batches of ``--batch``
points with ``--in-flight`` inserts outstanding, then runs
``select mean(1h) from /bench.*/`` three times. Reported, as medians over ``--runs``
(at least 3): points/s of the ingest, the query time, the server's resident memory when
idle and at its peak (``VmHWM``), and for ``data-dir`` the time a restarted server needs
to recover the data and listen again.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

PREFIX = "bench."
QUERY = "select mean(1h) from /bench.*/"
QUERY_REPEAT = 3
MODES = ("memory", "data-dir")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per mode, median taken (min 3)")
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--per-series", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=10_000, help="points per insert")
    parser.add_argument("--in-flight", type=int, default=4, help="inserts outstanding at once")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma separated: memory, data-dir (default both)")
    args = parser.parse_args(argv)
    args.runs = max(args.runs, 3)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    return args


# --------------------------------------------------------------------------- server


def start_server(data_dir: str | None) -> c.ServerProcess:
    """A fresh embedded server subprocess on a free port (``dbtest``, precision s)."""
    argv = [c.PYTHON, "-m", "tsconnector.server", "--host", "127.0.0.1", "--port", "0"]
    if data_dir is not None:
        argv += ["--data-dir", data_dir]
    return c.ServerProcess(argv, timeout=300)


def memory_mib(server: c.ServerProcess) -> tuple[float, float]:
    """(current, peak) resident set size of the server process in MiB (Linux /proc)."""
    values = {"VmRSS": float("nan"), "VmHWM": float("nan")}
    try:
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024  # kB
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


# ------------------------------------------------------------------------- workload


def make_batches(arrays: dict[str, Any], batch: int) -> list[dict[str, Any]]:
    """Split ``{name: (ts, values)}`` into inserts of about ``batch`` points each.

    Each insert holds the same time slice of every series (how a collector sends data).
    """
    series = len(arrays)
    per_series = len(next(iter(arrays.values()))[0])
    step = max(1, batch // series)
    return [
        {name: (ts[i : i + step], vs[i : i + step]) for name, (ts, vs) in arrays.items()}
        for i in range(0, per_series, step)
    ]


async def ingest(client: Any, batches: list[dict[str, Any]], in_flight: int) -> float:
    """Insert every batch with ``in_flight`` inserts outstanding; return the seconds taken."""
    queue = iter(batches)

    async def worker() -> None:
        for data in queue:
            await client.insert(data)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - start


async def query_seconds(client: Any, series: int) -> float:
    """Median seconds of ``QUERY`` (after checking its answer covers every series)."""
    times = []
    for _ in range(QUERY_REPEAT):
        start = time.perf_counter()
        answer = await client.query(QUERY, timeout=300)
        times.append(time.perf_counter() - start)
        if len(answer) != series:
            raise RuntimeError(f"{QUERY!r} answered {len(answer)} series, expected {series}")
    return statistics.median(times)


async def check_count(client: Any, expected: int) -> None:
    answer = await client.query(f"count series length /{PREFIX}.*/", timeout=300)
    total = answer["series_length"]
    if total != expected:
        raise RuntimeError(f"server holds {total} points, expected {expected}")


async def one_run(mode: str, batches: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, float]:
    """One fresh server: ingest, query, memory, and (data-dir) restart time."""
    points = args.series * args.per_series
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        data_dir = tmp if mode == "data-dir" else None
        server = start_server(data_dir)
        try:
            idle_rss, _ = memory_mib(server)
            client = await c.ts_client(server.hostlist)
            try:
                seconds = await ingest(client, batches, args.in_flight)
                await check_count(client, points)
                query = await query_seconds(client, args.series)
            finally:
                await c.close_client(client)
            _, peak_rss = memory_mib(server)
        finally:
            server.stop()
        restart = float("nan")
        if data_dir is not None:
            start = time.perf_counter()
            server = start_server(data_dir)
            try:
                restart = time.perf_counter() - start
                client = await c.ts_client(server.hostlist)
                try:
                    await check_count(client, points)
                finally:
                    await c.close_client(client)
            finally:
                server.stop()
    return {
        "points_per_s": points / seconds,
        "ingest_s": seconds,
        "query_s": query,
        "idle_mib": idle_rss,
        "peak_mib": peak_rss,
        "restart_s": restart,
    }


async def main(args: argparse.Namespace) -> None:
    arrays = c.make_arrays(args.series, args.per_series, PREFIX)
    batches = make_batches(arrays, args.batch)
    points = args.series * args.per_series
    print(c.describe_env())
    print(
        f"{points:,} points ({args.series} series x {args.per_series:,}), "
        f"{len(batches)} inserts of ~{points // len(batches):,} points, "
        f"{args.in_flight} in flight; query {QUERY!r}; median of {args.runs} runs"
    )
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in args.modes}
    for run in range(args.runs):  # modes interleaved so load changes hit both alike
        for mode in args.modes:
            results[mode].append(await one_run(mode, batches, args))
            print(f"  run {run + 1} {mode}: {results[mode][-1]['points_per_s']:,.0f} points/s",
                  flush=True)
    rows = []
    for mode, runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        rows.append([
            mode, med["points_per_s"], med["ingest_s"], med["query_s"] * 1000,
            med["idle_mib"], med["peak_mib"], med["restart_s"],
        ])
    c.print_table(
        "embedded server (subprocess), medians",
        ["mode", "points/s", "ingest s", "mean(1h) ms", "idle RSS MiB", "peak RSS MiB",
         "restart s"],
        rows,
    )


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
