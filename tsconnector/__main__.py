"""Command line: ``python -m tsconnector serve | query | insert | import | bench``."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TextIO

from .client import TsClient

_PRECISIONS = {"s": 0, "ms": 1, "us": 2, "ns": 3}


def _parse_hosts(spec: str) -> list[tuple[str, int]]:
    hosts = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise argparse.ArgumentTypeError(f"expected host:port, got {item!r}")
        hosts.append((host or "127.0.0.1", int(port)))
    if not hosts:
        raise argparse.ArgumentTypeError("no host given")
    return hosts


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hosts",
        type=_parse_hosts,
        default=None,
        help="host:port[,host:port...]; default: an embedded in-memory server",
    )
    parser.add_argument("--db", default="dbtest", help="database name (default dbtest)")
    parser.add_argument("--user", default="iris")
    parser.add_argument("--password", default="siri")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")


@asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[TsClient]:
    """A connected client for the given hosts, or for a throw-away embedded server."""
    if args.hosts:
        async with TsClient(args.user, args.password, args.db, args.hosts) as client:
            yield client
        return
    from .server import EmbeddedServer

    async with EmbeddedServer(port=0, databases=((args.db, "s"),)) as server:
        hosts = [(server.host, server.port)]
        async with TsClient(args.user, args.password, args.db, hosts) as client:
            yield client


async def _cmd_query(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        precision = None if args.precision is None else _PRECISIONS[args.precision]
        for text in args.query:
            answer = await client.query(text, precision, timeout=args.timeout)
            json.dump(answer, sys.stdout, indent=None if args.compact else 2)
            sys.stdout.write("\n")
    return 0


def _read_json(path: str) -> Any:
    if path == "-":
        return json.load(sys.stdin)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


async def _cmd_insert(args: argparse.Namespace) -> int:
    data = _read_json(args.file)
    async with _client(args) as client:
        answer = await client.insert(data, timeout=args.timeout)
    print(answer["success_msg"])
    return 0


def _csv_batches(fh: TextIO, batch_size: int) -> Any:
    """Yield ``{series: [[ts, value], ...]}`` batches from ``series,timestamp,value`` rows."""
    batch: dict[str, list[list[Any]]] = {}
    count = 0
    for row_no, row in enumerate(csv.reader(fh), 1):
        if not row or row[0].startswith("#"):
            continue
        if len(row) != 3:
            raise ValueError(f"line {row_no}: expected series,timestamp,value, got {row!r}")
        name, ts_text, value_text = row
        try:
            ts = int(ts_text)
        except ValueError:
            if row_no == 1:
                continue  # a header line
            raise ValueError(f"line {row_no}: timestamp {ts_text!r} is not an integer") from None
        value: int | float | str
        try:
            value = int(value_text)
        except ValueError:
            try:
                value = float(value_text)
            except ValueError:
                value = value_text
        batch.setdefault(name, []).append([ts, value])
        count += 1
        if count >= batch_size:
            yield batch
            batch, count = {}, 0
    if batch:
        yield batch


async def _cmd_import(args: argparse.Namespace) -> int:
    total = 0
    started = time.perf_counter()
    source = open(args.file, encoding="utf-8", newline="") if args.file != "-" else sys.stdin  # noqa: ASYNC230, SIM115 - a CLI reading its own input
    with source as fh:
        async with _client(args) as client:
            for batch in _csv_batches(fh, args.batch):
                await client.insert(batch, timeout=args.timeout)
                total += sum(len(points) for points in batch.values())
    elapsed = time.perf_counter() - started
    print(f"imported {total} points in {elapsed:.2f} s")
    return 0


async def _cmd_bench(args: argparse.Namespace) -> int:
    """A quick end-to-end measurement: batched inserts, then concurrent small queries."""
    async with _client(args) as client:
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
                await client.query(f'select last() from "bench.{i % args.series}"')
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.queries)))
        query_s = time.perf_counter() - started
    latencies.sort()
    total = per_series * args.series
    print(f"insert: {total} points in {insert_s:.2f} s = {total / insert_s:,.0f} points/s")
    print(
        f"query:  {args.queries} queries in {query_s:.2f} s = {args.queries / query_s:,.0f} q/s, "
        f"p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1e3:.2f} ms"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsconnector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser(
        "serve",
        help="run the embedded server (see python -m tsconnector.server -h)",
        add_help=False,
    )

    q = sub.add_parser("query", help="run queries and print the answers as JSON")
    _add_connection_args(q)
    q.add_argument("query", nargs="+")
    q.add_argument("--precision", choices=sorted(_PRECISIONS), default=None)
    q.add_argument("--compact", action="store_true", help="one JSON document per line")

    i = sub.add_parser("insert", help="insert a JSON document {series: [[ts, value], ...]}")
    _add_connection_args(i)
    i.add_argument("file", help="JSON file, or - for standard input")

    m = sub.add_parser("import", help="import CSV rows series,timestamp,value in batches")
    _add_connection_args(m)
    m.add_argument("file", help="CSV file, or - for standard input")
    m.add_argument("--batch", type=int, default=10_000, help="points per insert")

    b = sub.add_parser("bench", help="measure insert and query throughput")
    _add_connection_args(b)
    b.add_argument("--points", type=int, default=200_000)
    b.add_argument("--series", type=int, default=10)
    b.add_argument("--batch", type=int, default=1_000, help="points per series per insert")
    b.add_argument("--queries", type=int, default=5_000)
    b.add_argument("--concurrency", type=int, default=50)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from .server.__main__ import main as serve

        return serve(argv[1:])
    args = build_parser().parse_args(argv)
    handler = {
        "query": _cmd_query,
        "insert": _cmd_insert,
        "import": _cmd_import,
        "bench": _cmd_bench,
    }[args.command]
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
