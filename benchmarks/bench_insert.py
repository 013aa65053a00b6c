"""Benchmark inserts: 1 M points (100 series x 10 k) in batches of 10 k, 100 k and 1 M.

Run: ``python benchmarks/bench_insert.py [--hosts host:port] [--runs N]``.

For each batch size the same points are inserted, one batch after the other, by
tsconnector from lists of ``[ts, value]`` pairs, tsconnector from ``(timestamps,
values)`` numpy arrays, siridb-connector from lists, and siridb-connector from the numpy
arrays (converted with ``.tolist()`` inside the timing, as its users must):

1. end to end against the benchmarked server (embedded, in a subprocess, by default):
   points per second including the server's work;
2. client side against an instant server (a subprocess that answers every insert at
   once after skipping the payload): the time to pack and send, which is what the
   client itself costs.

Each table also shows this process's CPU time (packing, copying, the socket calls),
which excludes the server's work because the server runs in another process.

The series are dropped after every run so the server's memory stays bounded. Medians
of ``--runs`` runs (min 5), interleaved; the ratio is how many times faster
tsconnector is than siridb-connector on the same batches.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

PREFIX = "bi."
SERIES, PER_SERIES = 100, 10_000
TOTAL = SERIES * PER_SERIES
BATCHES = (10_000, 100_000, 1_000_000)
DROP = "drop series /^bi[.].*$/ set ignore_threshold true"
CLIENTS = (
    "tsconnector (lists)",
    "tsconnector (numpy)",
    "siridb-connector (lists)",
    "siridb-connector (numpy: .tolist())",
)
#: siridb-connector's path for numpy data: convert to lists (timed), then insert.
NUMPY_BASELINE = CLIENTS[3]

Measured = dict[tuple[str, int], tuple[float, float]]


def make_batches() -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Per (input kind, batch size): the batches, each holding every series' slice."""
    arrays = c.make_arrays(SERIES, PER_SERIES, PREFIX)
    lists = c.to_lists(arrays)
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for size in BATCHES:
        step = size // SERIES
        out[("numpy", size)] = [
            {name: (ts[i : i + step], vs[i : i + step]) for name, (ts, vs) in arrays.items()}
            for i in range(0, PER_SERIES, step)
        ]
        out[("lists", size)] = [
            {name: points[i : i + step] for name, points in lists.items()}
            for i in range(0, PER_SERIES, step)
        ]
    return out


def _tolist(batch: dict[str, Any]) -> dict[str, Any]:
    """What a siridb-connector user must do with numpy points before inserting them."""
    return {name: list(zip(ts.tolist(), vs.tolist())) for name, (ts, vs) in batch.items()}


async def run_inserts(
    hosts: c.Hostlist, args: Any, batches: dict[tuple[str, int], list[dict[str, Any]]],
    runs: int, drop: bool,
) -> Measured:
    """Median (wall seconds, client CPU seconds) to insert all batches, per case."""
    ts = await c.ts_client(hosts, args)
    siri = await c.siri_client(hosts, args)
    try:
        if drop:
            await ts.query(DROP)

        def case(client: Any, data: list[dict[str, Any]], convert: bool = False) -> Any:
            async def insert_all() -> None:
                for batch in data:
                    await client.insert(_tolist(batch) if convert else batch, timeout=600)
            return insert_all

        async def after_each() -> None:
            if drop:
                await ts.query(DROP)
            gc.collect()

        results: Measured = {}
        for size in BATCHES:
            cases = [
                (CLIENTS[0], case(ts, batches[("lists", size)])),
                (CLIENTS[1], case(ts, batches[("numpy", size)])),
                (CLIENTS[2], case(siri, batches[("lists", size)])),
                (CLIENTS[3], case(siri, batches[("numpy", size)], convert=True)),
            ]
            for label, (wall, cpu) in (await _interleaved(cases, runs, after_each)).items():
                results[(label, size)] = (c.median(wall), c.median(cpu))
    finally:
        await c.close_client(ts)
        await c.close_client(siri)
    return results


async def _interleaved(
    cases: list[tuple[str, Any]], runs: int, after_each: Any
) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU seconds of this process per run, cases interleaved, one warm-up."""
    times: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label, _ in cases}
    for _label, fn in cases:
        await fn()
        await after_each()
    for run in range(runs):
        shift = run % len(cases)
        for label, fn in [*cases[shift:], *cases[:shift]]:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            await fn()
            times[label][0].append(time.perf_counter() - wall0)
            times[label][1].append(time.process_time() - cpu0)
            await after_each()
    return times


def rows_for(results: Measured) -> list[list[Any]]:
    rows = []
    for size in BATCHES:
        for label in CLIENTS:
            wall, cpu = results[(label, size)]
            row: list[Any] = [f"{size:>9,}", label, wall * 1e3, TOTAL / wall / 1e6, cpu * 1e3]
            if label.startswith("tsconnector"):
                lists_wall, lists_cpu = results[(CLIENTS[2], size)]
                row += [c.ratio(wall, lists_wall), c.ratio(cpu, lists_cpu)]
                if label == CLIENTS[1]:
                    np_wall, np_cpu = results[(NUMPY_BASELINE, size)]
                    row += [c.ratio(wall, np_wall), c.ratio(cpu, np_cpu)]
                else:
                    row += ["", ""]
            else:
                row += ["", "", "", ""]
            rows.append(row)
    return rows


HEADERS = [
    "batch", "client (input)", "wall ms", "M points/s", "client CPU ms",
    "wall vs siri lists", "CPU vs siri lists", "wall vs siri numpy", "CPU vs siri numpy",
]


async def amain(args: Any) -> None:
    runs = max(5, args.runs)
    print(f"bench_insert: {c.describe_env()}; {TOTAL:,} points, median of {runs} runs")
    batches = make_batches()
    with c.target_hosts(args) as hosts:
        where = args.hosts or f"embedded server (subprocess) {hosts[0][0]}:{hosts[0][1]}"
        print(f"server: {where}")
        end_to_end = await run_inserts(hosts, args, batches, runs, drop=True)
    c.print_table(
        "1. end to end: insert 1 M points, server included "
        "(client CPU = this process's CPU time: packing + sending)",
        HEADERS, rows_for(end_to_end),
    )
    with c.instant_server() as instant:
        client_side = await run_inserts(instant.hostlist, args, batches, runs, drop=False)
    c.print_table(
        "2. client side: insert 1 M points into an instant server (wall = pack + send)",
        HEADERS, rows_for(client_side),
    )
    print("\nTarget: client-side time >= 2x faster than siridb-connector's")
    for size in BATCHES:
        lists_wall = client_side[(CLIENTS[2], size)][0]
        np_wall = client_side[(NUMPY_BASELINE, size)][0]
        ours_lists = client_side[(CLIENTS[0], size)][0]
        ours_np = client_side[(CLIENTS[1], size)][0]
        print(c.verdict(f"batch {size:,}: numpy vs siridb-connector from numpy",
                        np_wall / ours_np, 2))
        print(c.verdict(f"batch {size:,}: numpy vs siridb-connector from lists",
                        lists_wall / ours_np, 2))
        print(c.verdict(f"batch {size:,}: lists vs siridb-connector from lists",
                        lists_wall / ours_lists, 2))


def main() -> None:
    asyncio.run(amain(c.base_parser(__doc__).parse_args()))


if __name__ == "__main__":
    main()
