"""Benchmark queries: a 1 M-point ``select *`` answer and many small queries.

Run: ``python benchmarks/bench_query.py [--hosts host:port] [--runs N] [--small N]``.

1. Large answer (100 series x 10 k points = 1 M points), decoded to dicts (tsconnector's
   default, siridb-connector) and to numpy arrays (``as_arrays=True``, and
   siridb-connector's lists converted with numpy):
   a. decode only: the same captured answer bytes decoded in this process, through
      siridb-connector's own ``DataPackage`` code and tsconnector's decoders;
   b. client side: ``query()`` end to end against an instant server (a subprocess that
      replays the captured answer at once), so the time is the client's alone;
   c. end to end against the benchmarked server (server time included).
2. Small queries: ``select last() from "s"`` repeated (default 20,000) with 1 and with 100
   requests in flight on one client (the same caller harness for both clients: one task
   per request in flight, awaiting its queries one after the other): queries/s, p50 and
   p99 latency, the client's CPU time per query (``time.process_time()`` of this process;
   the server is another process) and the server's (when its process is known); against
   the benchmarked server, then (100 in flight) against an instant server replaying the
   answer, which shows what each client can do when the server is not the limit. When
   the server's process is busy nearly all the time, the output says that queries/s is
   the server's limit.

Every case is run ``--runs`` times (min 5), interleaved, and the median is reported;
the ratio column is how many times faster tsconnector is than siridb-connector.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

PREFIX = "bq."
SERIES, PER_SERIES = 100, 10_000
SMALL_SERIES = "s"
SMALL_POINTS = 100
BIG_QUERY = f"select * from /^{PREFIX.replace('.', '[.]')}.*$/"
SMALL_QUERY = f'select last() from "{SMALL_SERIES}"'


# ------------------------------------------------------------------------------- setup


async def load_data(hosts: c.Hostlist, args: Any) -> tuple[bytes, bytes]:
    """Insert the benchmark data (replacing earlier runs'); return the raw answers of the
    big and the small query."""
    from tsconnector.connection import open_connection
    from tsconnector.protocol import RequestType, pack

    client = await c.ts_client(hosts, args)
    try:
        await client.query(
            f"drop series /^({PREFIX.replace('.', '[.]')}.*|{SMALL_SERIES})$/ "
            "set ignore_threshold true"
        )
        await client.insert(c.make_arrays(SERIES, PER_SERIES, PREFIX))
        small = next(iter(c.make_arrays(1, SMALL_POINTS).values()))
        await client.insert({SMALL_SERIES: small})
    finally:
        await c.close_client(client)
    host, port = hosts[0]
    conn = await open_connection(host, port, args.user, args.password, args.db)
    try:  # raw requests, keeping the answers' payload bytes
        big = await conn.request(
            RequestType.QUERY, pack([BIG_QUERY, None]), timeout=300, decode=bytes
        )
        small = await conn.request(
            RequestType.QUERY, pack([SMALL_QUERY, None]), timeout=60, decode=bytes
        )
        return big, small
    finally:
        conn.close()
        await conn.wait_closed()


# ---------------------------------------------------------------------- large answers


def decode_cases(raw: bytes) -> list[tuple[str, Callable[[], Any]]]:
    """In-process decoders of the same bytes, as each client decodes them."""
    import numpy as np
    from siridb.connector.lib.datapackage import DataPackage

    from tsconnector.protocol import HEADER
    from tsconnector.protocol.answers import decode_answer, decode_series_arrays

    frame = HEADER.pack(len(raw), 1, 0, 0xFF) + raw

    def siri_dicts() -> Any:
        buf = bytearray(frame)  # what its protocol holds after data_received
        pkg = DataPackage(buf)
        pkg.extract_data_from(buf)
        return pkg.data

    def siri_arrays() -> Any:
        return {name: _to_numpy(points, np) for name, points in siri_dicts().items()}

    return [
        ("tsconnector dicts", lambda: decode_answer(raw)),
        ("siridb-connector dicts", siri_dicts),
        ("tsconnector arrays", lambda: decode_series_arrays(raw)),
        ("siridb-connector + numpy", siri_arrays),
    ]


def _to_numpy(points: list[list[Any]], np: Any) -> tuple[Any, Any]:
    """What a siridb-connector user does to get arrays: one 2-D array, split in two."""
    both = np.array(points)
    return both[:, 0].astype(np.int64), both[:, 1]


def run_decode(raw: bytes, runs: int) -> dict[str, float]:
    cases = decode_cases(raw)
    check = {label: fn() for label, fn in cases}
    _check_same(check)
    del check
    gc.collect()
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for run in range(runs):
        shift = run % len(cases)
        for label, fn in [*cases[shift:], *cases[:shift]]:
            start = time.perf_counter()
            result = fn()
            times[label].append(time.perf_counter() - start)
            del result
    return {label: c.median(v) for label, v in times.items()}


def _check_same(results: dict[str, Any]) -> None:
    """Both clients must see the same points (sanity check on one series)."""
    dicts = results["tsconnector dicts"]
    if dicts != results["siridb-connector dicts"]:
        raise SystemExit("decoded answers differ")
    name = next(iter(dicts))
    ts, vs = results["tsconnector arrays"][name]
    if ts.tolist() != [p[0] for p in dicts[name]] or vs.tolist() != [p[1] for p in dicts[name]]:
        raise SystemExit("array answer differs from the dict answer")
    if sum(len(p) for p in dicts.values()) != SERIES * PER_SERIES:
        raise SystemExit("unexpected number of points")


async def run_query_cases(hosts: c.Hostlist, args: Any, runs: int) -> dict[str, float]:
    """``query()`` of the big answer through each client, median seconds."""
    import numpy as np

    ts = await c.ts_client(hosts, args)
    siri = await c.siri_client(hosts, args)
    try:

        async def ts_dicts(_run: int) -> None:
            await ts.query(BIG_QUERY, timeout=300)

        async def ts_arrays(_run: int) -> None:
            await ts.query(BIG_QUERY, timeout=300, as_arrays=True)

        async def siri_dicts(_run: int) -> None:
            await siri.query(BIG_QUERY, timeout=300)

        async def siri_arrays(_run: int) -> None:
            answer = await siri.query(BIG_QUERY, timeout=300)
            {name: _to_numpy(points, np) for name, points in answer.items()}

        cases: list[tuple[str, Callable[[int], Awaitable[None]]]] = [
            ("tsconnector dicts", ts_dicts),
            ("siridb-connector dicts", siri_dicts),
            ("tsconnector arrays", ts_arrays),
            ("siridb-connector + numpy", siri_arrays),
        ]
        for _, fn in cases:
            await fn(0)  # warm up
        times = await c.median_async(cases, runs)
    finally:
        await c.close_client(ts)
        await c.close_client(siri)
    return {label: c.median(v) for label, v in times.items()}


def big_rows(times: dict[str, float]) -> list[list[Any]]:
    points = SERIES * PER_SERIES
    pairs = {
        "tsconnector dicts": "siridb-connector dicts",
        "tsconnector arrays": "siridb-connector + numpy",
    }
    rows = []
    for label, seconds in times.items():
        other = pairs.get(label)
        rows.append([
            label, seconds * 1e3, points / seconds / 1e6,
            c.ratio(seconds, times[other]) if other else "",
        ])
    return rows


# ---------------------------------------------------------------------- small queries


@dataclass
class SmallRun:
    """One run of small queries: wall seconds, latencies, this process's CPU seconds (the
    client's, plus the caller's own harness) and the server's CPU seconds (NaN if unknown)."""

    seconds: float
    latencies: list[float]
    client_cpu: float
    server_cpu: float


async def small_run(
    client: Any, total: int, in_flight: int, server: Callable[[], float] | None = None
) -> SmallRun:
    """``total`` small queries with ``in_flight`` workers (the caller harness: one task per
    worker, each awaiting its queries one after the other)."""
    latencies: list[float] = []
    per_worker, extra = divmod(total, in_flight)
    clock = time.perf_counter
    query = client.query

    async def worker(count: int) -> None:
        append = latencies.append
        for _ in range(count):
            start = clock()
            await query(SMALL_QUERY)
            append(clock() - start)

    server_before = server() if server is not None else float("nan")
    cpu_before = time.process_time()
    start = clock()
    await asyncio.gather(*(worker(per_worker + (i < extra)) for i in range(in_flight)))
    seconds = clock() - start
    client_cpu = time.process_time() - cpu_before
    server_cpu = server() - server_before if server is not None else float("nan")
    return SmallRun(seconds, latencies, client_cpu, server_cpu)


class _NullClient:
    """The caller harness alone: a query that completes without any client work."""

    async def query(self, _query: str) -> None:
        await _ready()


def _ready() -> asyncio.Future[None]:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


async def harness_cpu(total: int, in_flight: int, runs: int) -> float:
    """CPU seconds per query of the caller harness itself (median of ``runs``)."""
    null = _NullClient()
    await small_run(null, min(total, 2000), in_flight)
    return c.median([(await small_run(null, total, in_flight)).client_cpu / total
                     for _ in range(runs)])


async def run_small(
    hosts: c.Hostlist, args: Any, runs: int, total: int, in_flights: tuple[int, ...] = (1, 100),
    server: Callable[[], float] | None = None,
) -> tuple[list[list[Any]], dict[tuple[str, int], SmallRun]]:
    """Rows of the small-query table and the median run of each (client, in flight)."""
    ts = await c.ts_client(hosts, args)
    siri = await c.siri_client(hosts, args)
    answer_ts = await ts.query(SMALL_QUERY)
    answer_siri = await siri.query(SMALL_QUERY)
    if answer_ts != answer_siri or len(answer_ts.get(SMALL_SERIES, ())) != 1:
        raise SystemExit(f"unexpected small answers: {answer_ts!r} / {answer_siri!r}")
    results: dict[tuple[str, int], list[SmallRun]] = {}
    try:
        for in_flight in in_flights:
            cases = [("tsconnector", ts), ("siridb-connector", siri)]
            for _label, client in cases:
                await small_run(client, min(total, 2000), in_flight)  # warm up
            for run in range(runs):
                for label, client in cases if run % 2 == 0 else cases[::-1]:
                    gc.collect()
                    results.setdefault((label, in_flight), []).append(
                        await small_run(client, total, in_flight, server))
    finally:
        await c.close_client(ts)
        await c.close_client(siri)
    rows = []
    medians: dict[tuple[str, int], SmallRun] = {}
    rates: dict[tuple[str, int], float] = {}
    for (label, in_flight), measured in results.items():
        rate = c.median([total / m.seconds for m in measured])
        rates[(label, in_flight)] = rate
        p50 = c.median([c.percentile(sorted(m.latencies), 0.50) for m in measured])
        p99 = c.median([c.percentile(sorted(m.latencies), 0.99) for m in measured])
        cpu = c.median([m.client_cpu / total for m in measured])
        server_cpu = c.median([m.server_cpu / total for m in measured])
        busy = c.median([m.server_cpu / m.seconds for m in measured])
        medians[(label, in_flight)] = SmallRun(total / rate, [], cpu * total, server_cpu * total)
        rows.append([label, in_flight, rate, p50 * 1e3, p99 * 1e3, cpu * 1e6,
                     server_cpu * 1e6, f"{busy:.0%}" if busy == busy else "-"])
    for row in rows:
        label, in_flight = row[0], row[1]
        if label == "tsconnector":
            theirs = medians[("siridb-connector", in_flight)]
            ours = medians[(label, in_flight)]
            row.append(f"{rates[(label, in_flight)] / rates[('siridb-connector', in_flight)]:.2f}x")
            row.append(f"{ours.client_cpu / theirs.client_cpu:.2f}x")
        else:
            row.extend(["", ""])
    return rows, medians


SMALL_HEADERS = ["client", "in flight", "queries/s", "p50 ms", "p99 ms", "client CPU us/q",
                 "server CPU us/q", "server busy", "q/s vs siridb-connector",
                 "CPU vs siridb-connector"]


def server_bound_note(rows: list[list[Any]]) -> str | None:
    """A note for the rows whose queries/s the server, not the client, limits: its
    process was busy nearly all the time, or it spends more CPU per query than the client
    (each process runs on one core at most, so the slower side sets the pace)."""
    bound = []
    for row in rows:
        client_cpu, server_cpu, busy = row[5], row[6], row[7]
        busy_pct = float(busy[:-1]) if isinstance(busy, str) and busy.endswith("%") else 0.0
        if busy_pct >= 85 or (server_cpu == server_cpu and server_cpu > client_cpu):
            bound.append(f"{row[0]} ({row[1]} in flight: server {server_cpu:.1f} us/q, "
                         f"client {client_cpu:.1f} us/q, server busy {busy})")
    if not bound:
        return None
    return ("  note: the server is the bottleneck for " + "; ".join(bound) + ". Its "
            "queries/s (and their ratio) is the server's limit, which no client can move; "
            "compare the client CPU per query instead.")


# -------------------------------------------------------------------------------- main


async def amain(args: Any) -> None:
    runs = max(5, args.runs)
    print(f"bench_query: {c.describe_env()}; median of {runs} runs")
    verdicts: list[str] = []
    with c.target_server(args) as (hosts, server):
        where = args.hosts or f"embedded server (subprocess) {hosts[0][0]}:{hosts[0][1]}"
        print(f"server: {where}")
        raw, raw_small = await load_data(hosts, args)
        print(f"1 M-point answer: {len(raw):,} bytes")

        if not args.skip_big:
            decode = run_decode(raw, runs)
            c.print_table(
                "1a. decode only: the same 1 M-point answer bytes, in this process",
                ["decoder", "median ms", "M points/s", "vs siridb-connector"],
                big_rows(decode),
            )
            with tempfile.NamedTemporaryFile(suffix=".qp") as tmp:
                tmp.write(raw)
                tmp.flush()
                with c.instant_server(tmp.name) as instant:
                    client_side = await run_query_cases(instant.hostlist, args, runs)
            c.print_table(
                "1b. client side: query() of the 1 M-point answer from an instant server",
                ["client / result", "median ms", "M points/s", "vs siridb-connector"],
                big_rows(client_side),
            )
            end_to_end = await run_query_cases(hosts, args, runs)
            c.print_table(
                "1c. end to end: query() of the 1 M-point answer from the server",
                ["client / result", "median ms", "M points/s", "vs siridb-connector"],
                big_rows(end_to_end),
            )
            verdicts.append(c.verdict(
                "1 M-point answer to arrays (decode time)",
                decode["siridb-connector + numpy"] / decode["tsconnector arrays"], 5))
            verdicts.append(c.verdict(
                "1 M-point answer to dicts (decode time)",
                decode["siridb-connector dicts"] / decode["tsconnector dicts"], 1.5))
            verdicts.append(c.verdict(
                "1 M-point answer to arrays (client side, query())",
                client_side["siridb-connector + numpy"] / client_side["tsconnector arrays"], 5))
            verdicts.append(c.verdict(
                "1 M-point answer to dicts (client side, query())",
                client_side["siridb-connector dicts"] / client_side["tsconnector dicts"], 1.5))

        if args.small > 0:
            rows, medians = await run_small(hosts, args, runs, args.small, server=server)
            c.print_table(
                f"2. small queries: {args.small:,} x '{SMALL_QUERY}' on one client "
                "(client CPU: this process's time.process_time() per query)",
                SMALL_HEADERS, rows,
            )
            note = server_bound_note(rows)
            if note:
                print(note)
            harness = await harness_cpu(args.small, 100, runs)
            ours = medians[("tsconnector", 100)].client_cpu / args.small
            theirs = medians[("siridb-connector", 100)].client_cpu / args.small
            print(f"  the caller harness alone (100 workers, a query that does nothing): "
                  f"{harness * 1e6:.1f} us/q; client CPU without it: tsconnector "
                  f"{(ours - harness) * 1e6:.1f} us/q, siridb-connector "
                  f"{(theirs - harness) * 1e6:.1f} us/q")
            verdicts.append(c.verdict_at_most(
                "100-in-flight small queries, client CPU per query vs siridb-connector "
                "(same harness)", ours / theirs, 0.5))
            with tempfile.NamedTemporaryFile(suffix=".qp") as tmp:
                tmp.write(raw_small)
                tmp.flush()
                with c.instant_server(tmp.name) as instant:
                    rows, _ = await run_small(instant.hostlist, args, runs, args.small, (100,),
                                              server=instant.cpu_seconds)
            c.print_table(
                "2b. client side: the same small queries answered by an instant server "
                "(the server's answer bytes replayed)",
                SMALL_HEADERS, rows,
            )
            for row in rows:
                if row[0] == "tsconnector":
                    verdicts.append(c.verdict(
                        "100-in-flight small queries/s, client side", float(row[8][:-1]), 2))
                    verdicts.append(c.verdict_at_most(
                        "100-in-flight small queries, client CPU per query, instant server",
                        float(row[9][:-1]), 0.5))
    print("\nTargets:")
    print("\n".join(verdicts))


def main() -> None:
    parser = c.base_parser(__doc__)
    parser.add_argument("--small", type=int, default=20_000,
                        help="small queries per run (0 = skip; default 20000)")
    parser.add_argument("--skip-big", action="store_true", help="skip the 1 M-point answer")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
