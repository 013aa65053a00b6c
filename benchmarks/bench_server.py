"""Benchmark the embedded server against a real SiriDB: the same ingest and aggregate work.

Run: ``python benchmarks/bench_server.py [--runs N] [--hosts h:p] [--modes memory,data-dir]``.

Every run does the same work through one TsClient (numpy input, ``as_arrays`` output):

- ``ingest 1x1M``: one insert of 1 series x 1,000,000 points (one per second, floats);
- ``ingest 100x10k``: one insert of 100 series x 10,000 points;
- ``mean(1h)``: ``select mean(1h) from "<the 1 M-point series>"``;
- ``max(1d) x100``: ``select max(1d) from /<the 100 series>/``;
- ``select * 1M``: ``select * from "<the 1 M-point series>"`` decoded to numpy arrays.

Targets: the embedded server in a fresh subprocess per run, in memory (``memory``) and
with ``--data-dir`` in a temporary directory (``data-dir``: the write-ahead log is
fsynced before an insert is acknowledged); and, with ``--hosts``, a running server such
as a real SiriDB 2.0.55 (database ``--db``, precision seconds; series of each run get a
fresh prefix and are dropped afterwards). Targets are interleaved within each run so load
changes hit all alike. Printed: medians over ``--runs`` (at least 3), the range seen, the
embedded server's resident memory and restart time, and the project's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

MODES = ("memory", "data-dir")
QUERY_REPEAT = 3
ONE_POINTS = 1_000_000
MANY_SERIES, MANY_POINTS = 100, 10_000

#: (label, key, unit, target, higher is better)
TARGETS = [
    ("embedded memory: ingest 1x1M", ("memory", "ingest 1x1M"), "M points/s", 3.0, True),
    ("embedded memory: ingest 100x10k", ("memory", "ingest 100x10k"), "M points/s", 3.0, True),
    ("embedded data-dir: ingest 1x1M", ("data-dir", "ingest 1x1M"), "M points/s", 2.0, True),
    ("embedded data-dir: ingest 100x10k", ("data-dir", "ingest 100x10k"), "M points/s", 2.0, True),
    ("embedded memory: mean(1h) over 1M", ("memory", "mean(1h)"), "ms", 25.0, False),
    ("embedded memory: select * 1M to arrays", ("memory", "select * 1M"), "ms", 400.0, False),
]
CASES = ["ingest 1x1M", "ingest 100x10k", "mean(1h)", "max(1d) x100", "select * 1M"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = c.base_parser(__doc__, default_runs=3)
    parser.add_argument("--modes", default=",".join(MODES),
                        help="embedded server modes, comma separated: memory, data-dir "
                        "(default both; empty for none)")
    args = parser.parse_args(argv)
    args.runs = max(args.runs, 3)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    if not args.modes and not args.hosts:
        parser.error("nothing to measure: give --modes or --hosts")
    return args


# --------------------------------------------------------------------------- servers


def start_embedded(data_dir: str | None) -> c.ServerProcess:
    """A fresh embedded server subprocess on a free port (``dbtest``, precision s)."""
    argv = [c.PYTHON, "-m", "tsconnector.server", "--host", "127.0.0.1", "--port", "0"]
    if data_dir is not None:
        argv += ["--data-dir", data_dir]
    return c.ServerProcess(argv, timeout=300)


def memory_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process in MiB (Linux /proc)."""
    values = {"VmRSS": float("nan"), "VmHWM": float("nan")}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) / 1024  # kB
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Target:
    """Somewhere to run the work: an embedded mode or the ``--hosts`` server."""

    label: str
    mode: str | None  # "memory" / "data-dir" for the embedded server, None for --hosts


# ------------------------------------------------------------------------------ work


async def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Median seconds of ``repeat`` awaited calls of ``fn`` and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


async def do_work(client: Any, prefix: str, data: dict[str, Any]) -> dict[str, float]:
    """The ingest and query work of one run; returns seconds per case (and checks answers)."""
    one_name = prefix + "one"
    one = {one_name: data["one"]}
    many = {f"{prefix}m{i:03d}": pts for i, pts in enumerate(data["many"])}
    out: dict[str, float] = {}
    out["ingest 1x1M"], _ = await timed(lambda: client.insert(one, timeout=600))
    out["ingest 100x10k"], _ = await timed(lambda: client.insert(many, timeout=600))
    answer = await client.query(f"count series length /^{prefix}.*/", timeout=600)
    if answer["series_length"] != ONE_POINTS + MANY_SERIES * MANY_POINTS:
        raise RuntimeError(f"the server holds {answer['series_length']} points, not 2,000,000")
    out["mean(1h)"], answer = await timed(
        lambda: client.query(f'select mean(1h) from "{one_name}"', timeout=600), QUERY_REPEAT
    )
    if not ONE_POINTS // 3600 <= len(answer[one_name]) <= ONE_POINTS // 3600 + 2:
        raise RuntimeError(f"mean(1h) answered {len(answer[one_name])} windows")
    out["max(1d) x100"], answer = await timed(
        lambda: client.query(f"select max(1d) from /^{prefix}m.*/", timeout=600), QUERY_REPEAT
    )
    if len(answer) != MANY_SERIES:
        raise RuntimeError(f"max(1d) answered {len(answer)} series")
    out["select * 1M"], answer = await timed(
        lambda: client.query(f'select * from "{one_name}"', timeout=600, as_arrays=True),
        QUERY_REPEAT,
    )
    if len(answer[one_name][0]) != ONE_POINTS:
        raise RuntimeError(f"select * answered {len(answer[one_name][0])} points")
    return out


async def run_embedded(mode: str, data: dict[str, Any], run: int) -> dict[str, float]:
    """One fresh embedded server: the work, its memory, and (data-dir) the restart time."""
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        data_dir = tmp if mode == "data-dir" else None
        server = start_embedded(data_dir)
        try:
            idle_rss, _ = memory_mib(server.proc.pid)
            client = await c.ts_client(server.hostlist)
            try:
                out = await do_work(client, f"bench{run}.", data)
            finally:
                await c.close_client(client)
            _, peak_rss = memory_mib(server.proc.pid)
        finally:
            server.stop()
        out["idle RSS MiB"], out["peak RSS MiB"] = idle_rss, peak_rss
        if data_dir is not None:
            start = time.perf_counter()
            server = start_embedded(data_dir)
            try:
                out["restart s"] = time.perf_counter() - start
                client = await c.ts_client(server.hostlist)
                try:
                    answer = await client.query("count series length", timeout=600)
                    if answer["series_length"] != ONE_POINTS + MANY_SERIES * MANY_POINTS:
                        raise RuntimeError("points lost over a restart")
                finally:
                    await c.close_client(client)
            finally:
                server.stop()
    return out


async def run_hosts(args: argparse.Namespace, data: dict[str, Any], run: int) -> dict[str, float]:
    """The work on the ``--hosts`` server, under a fresh prefix, dropped afterwards."""
    client = await c.ts_client(c.parse_hosts(args.hosts), args)
    prefix = f"bench{os.getpid()}x{run}."
    try:
        precision = await client.query("show time_precision")
        if precision["data"][0]["value"] != "s":
            raise SystemExit(f"--hosts: database {args.db!r} must have time precision s")
        try:
            return await do_work(client, prefix, data)
        finally:
            with contextlib.suppress(Exception):
                await client.query(f"drop series /^{prefix}.*/ set ignore_threshold true",
                                   timeout=600)
    finally:
        await c.close_client(client)


def make_data() -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(7)
    ts = np.arange(c.T0, c.T0 + ONE_POINTS, dtype=np.int64)
    many_ts = ts[:MANY_POINTS]
    return {
        "one": (ts, rng.random(ONE_POINTS)),
        "many": [(many_ts, rng.random(MANY_POINTS)) for _ in range(MANY_SERIES)],
    }


async def main(args: argparse.Namespace) -> None:
    data = make_data()
    targets = [Target(f"embedded {m}", m) for m in args.modes]
    if args.hosts:
        targets.append(Target(f"--hosts {args.hosts}", None))
    print(c.describe_env())
    print(f"work per run: {', '.join(CASES)}; median of {args.runs} runs "
          f"(queries: median of {QUERY_REPEAT} each)")
    results: dict[str, list[dict[str, float]]] = {t.label: [] for t in targets}
    for run in range(args.runs):
        shift = run % len(targets)
        for target in targets[shift:] + targets[:shift]:
            if target.mode is None:
                out = await run_hosts(args, data, run)
            else:
                out = await run_embedded(target.mode, data, run)
            results[target.label].append(out)
            print(f"  run {run + 1} {target.label}: "
                  + ", ".join(f"{k} {v * 1000:,.0f} ms" for k, v in out.items() if k in CASES),
                  flush=True)
    report(args, targets, results)


def _rate(points: int, seconds: float) -> float:
    return points / seconds / 1e6


def report(args: argparse.Namespace, targets: list[Target],
           results: dict[str, list[dict[str, float]]]) -> None:
    points = {"ingest 1x1M": ONE_POINTS, "ingest 100x10k": MANY_SERIES * MANY_POINTS}

    def cell(label: str, case: str) -> str:
        runs = [r[case] for r in results[label] if case in r]
        if not runs:
            return "-"
        if case in points:
            vals = sorted(_rate(points[case], s) for s in runs)
            med = _rate(points[case], statistics.median(runs))
            return f"{med:.2f} ({vals[0]:.2f}-{vals[-1]:.2f})"
        vals = sorted(s * 1000 for s in runs)
        return f"{statistics.median(runs) * 1000:,.1f} ({vals[0]:,.1f}-{vals[-1]:,.1f})"

    headers = ["case", *(t.label for t in targets)]
    rows = []
    for case in CASES:
        unit = "M points/s" if case in points else "ms"
        rows.append([f"{case} [{unit}]", *(cell(t.label, case) for t in targets)])
    for extra in ("idle RSS MiB", "peak RSS MiB", "restart s"):
        if any(extra in r for runs in results.values() for r in runs):
            rows.append([extra, *(
                f"{statistics.median(r[extra] for r in results[t.label]):.1f}"
                if any(extra in r for r in results[t.label]) else "-" for t in targets)])
    c.print_table(f"median (min-max) of {args.runs} runs", headers, rows)
    if args.hosts and args.modes:
        ref = f"--hosts {args.hosts}"
        ratio_rows = []
        for case in CASES:
            theirs = statistics.median(r[case] for r in results[ref])
            ratio_rows.append([case, *(
                f"{theirs / statistics.median(r[case] for r in results[t.label]):.2f}x"
                for t in targets if t.mode is not None)])
        c.print_table("embedded server speed relative to --hosts (>1: faster)",
                      ["case", *(t.label for t in targets if t.mode is not None)], ratio_rows)
    print("\ntargets:")
    for name, (mode, case), unit, goal, higher in TARGETS:
        label = f"embedded {mode}"
        if label not in results:
            continue
        secs = statistics.median(r[case] for r in results[label])
        value = _rate(points[case], secs) if case in points else secs * 1000
        ok = value >= goal if higher else value <= goal
        sign = ">=" if higher else "<="
        print(f"  {name}: {value:,.2f} {unit} ({sign} {goal:g}) {'MET' if ok else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
