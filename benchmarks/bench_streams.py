"""Benchmark streams: a StreamSet of 100 streams read with ``values()`` and ``windows()``.

Run: ``python benchmarks/bench_streams.py [--hosts host:port --db NAME] [--runs N]``.

Data: 100 streams x 10,000 points (1 M points, one per second, ns database), the
catalog in SQLite memory. Each read is done four ways and timed end to end:

1. ``StreamSet.values()`` / ``.arrays()``: one query naming the 100 series;
2. raw ``TsClient.query`` of the same ``select *`` (dicts, and ``as_arrays=True``);
3. one query per stream (``Stream.values()`` for each, all in flight at once), the way
   BTrDB's client fans a StreamSet out;

and for windows (60 s, BTrDB semantics: ``[start, start + 60 s)``, time = start):

1. ``StreamSet.windows(60 s).values()``: a histogram request, then the raw points in
   chunks, folded into windows client-side (exact at every bucket edge);
2. raw ``TsClient.query`` doing the same work (``select *`` as arrays + the same folding);
3. raw ``TsClient.query`` of SiriDB's own aggregates (``count/min/max/mean/pvariance
   (60s)``) -- less work, but SiriDB's buckets are ``(end - 60 s, end]``, so a point on a
   minute boundary lands in another window than in BTrDB: a reference, not the same result;
4. one ``Stream.windows()`` per stream, all in flight.

Medians of ``--runs`` runs (min 5), cases interleaved; the ratio is each case's time over
the StreamSet's. The server runs in a subprocess (its time is included: end to end).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

STREAMS, PER_STREAM = 100, 10_000
T0_NS = c.T0 * 10**9
WIDTH = 60 * 10**9


async def setup(hosts: c.Hostlist, args: Any) -> tuple[Any, Any, Any]:
    import numpy as np

    from tsconnector.catalog import SqliteDB
    from tsconnector.streams import StreamDB

    client = await c.ts_client(hosts, args)
    catalog = SqliteDB(":memory:")
    db = await StreamDB(client, catalog).open()
    streams = await db.create_many(
        {"uuid": uuid.uuid4(), "collection": "bench", "tags": {"name": f"s{i:03d}"}}
        for i in range(STREAMS)
    )
    times = T0_NS + np.arange(PER_STREAM, dtype=np.int64) * 10**9
    rng = np.random.default_rng(7)
    await streams.insert({s: (times, rng.random(PER_STREAM)) for s in streams})
    return client, db, streams.filter(start=T0_NS, end=T0_NS + PER_STREAM * 10**9)


async def run(hosts: c.Hostlist, args: Any) -> None:
    from tsconnector.ql import quote_name
    from tsconnector.streams.windows import WindowAccumulator, WindowSpec

    client, db, streams = await setup(hosts, args)
    names = [s.series for s in streams]
    selection = ", ".join(quote_name(n) for n in names)
    end_ns = T0_NS + PER_STREAM * 10**9
    precision = (await db.data.settings()).precision
    unit = 10 ** (9 - 3 * precision)
    between = f" between {T0_NS // unit} and {end_ns // unit}"
    spec = WindowSpec.windows(T0_NS, end_ns, WIDTH)
    aggregates = ", ".join(
        f"{fn}({WIDTH // unit}) prefix '{fn}-'" for fn in ("count", "min", "max", "mean", "pvariance")
    )

    async def raw_folded() -> Any:
        answer = await client.query(f"select * from {selection}{between}", as_arrays=True)
        out = {}
        for name, (ts, values) in answer.items():
            acc = WindowAccumulator(spec, precision)
            acc.add(ts, values.astype("float64"))
            out[name] = acc.result()
        return out

    async def per_stream(method: str) -> Any:
        if method == "values":
            return await asyncio.gather(*(s.values(T0_NS, end_ns) for s in streams))
        return await asyncio.gather(*(s.windows(T0_NS, end_ns, WIDTH) for s in streams))

    def timed(fn: Any) -> Any:
        async def case(_run: int) -> None:
            result = await fn()
            assert result
            return None

        return case

    value_cases = [
        ("StreamSet.values() -> RawPoint lists", timed(streams.values)),
        ("StreamSet.arrays() -> numpy", timed(streams.arrays)),
        ("raw TsClient.query (dicts)", timed(lambda: client.query(f"select * from {selection}{between}"))),
        ("raw TsClient.query (as_arrays)", timed(
            lambda: client.query(f"select * from {selection}{between}", as_arrays=True))),
        ("one Stream.values() per stream", timed(lambda: per_stream("values"))),
    ]
    window_cases = [
        ("StreamSet.windows(60s).values()", timed(streams.windows(WIDTH).values)),
        ("raw TsClient.query: select * + same folding", timed(raw_folded)),
        ("raw TsClient.query: SiriDB aggregates (other edges)", timed(
            lambda: client.query(f"select {aggregates} from {selection}{between}"))),
        ("one Stream.windows() per stream", timed(lambda: per_stream("windows"))),
    ]
    before = sum(h.requests for h in client.stats())
    await streams.values()
    values_requests = sum(h.requests for h in client.stats()) - before
    before = sum(h.requests for h in client.stats())
    await streams.windows(WIDTH).values()
    window_requests = sum(h.requests for h in client.stats()) - before

    runs = max(5, args.runs)
    for title, cases, requests in (
        (f"values(): {STREAMS} streams x {PER_STREAM:,} points (1 M)", value_cases, values_requests),
        (f"windows(60 s): {STREAMS} streams, {spec.count} windows each", window_cases, window_requests),
    ):
        times = await c.median_async(cases, runs)
        base = c.median(times[cases[0][0]])
        rows = [
            (label, c.median(times[label]), c.median(times[label]) / base) for label, _ in cases
        ]
        c.print_table(
            f"{title} -- StreamSet: {requests} request(s); median of {runs} runs",
            ["case", "seconds", "x StreamSet"],
            rows,
        )
    await db.catalog.close()
    await c.close_client(client)


def main() -> None:
    parser = c.base_parser(__doc__)
    args = parser.parse_args()
    if args.hosts:
        asyncio.run(run(c.parse_hosts(args.hosts), args))
        return
    args.db = "bench"
    server = c.ServerProcess(
        [c.PYTHON, "-m", "tsconnector.server", "--host", "127.0.0.1", "--port", "0",
         "--db", "bench:ns"]
    )
    try:
        asyncio.run(run(server.hostlist, args))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
