"""Benchmark per-pool insert routing against random choice on a multi-pool cluster.

Run: ``python benchmarks/bench_cluster.py [--hosts h:p,h:p,...] [--runs N] [--batches N]``.

Without ``--hosts`` three embedded servers run as subprocesses, each given the same
3-pool topology (``--topology``), so the cluster-aware client sees a 3-pool cluster. With
``--hosts`` the servers of a real SiriDB cluster are used (every one of them in the
random case; the routed client discovers any missing one).

Each run inserts ``--batches`` batches of 30 series x 100 points (the same series every
batch, new timestamps), ``--in-flight`` at a time, with:

- **random**: ``TsClient(...)``, every batch whole to one server chosen as always
  (least outstanding requests, ties at random), which forwards the points of the series
  other pools own, as SiriDB does;
- **routed**: ``TsClient(..., discover=True)``, every batch split per owning pool and
  each part sent to a server of that pool.

Requests and points *forwarded* are the ones a SiriDB server passes on to another pool
(series it does not own), counted from where each request went. The embedded servers
are a test double: they store what they receive and forward nothing, so against them
points/s shows the client's cost of splitting; against a real cluster it also shows
what routing saves the servers. Prints medians of ``--runs`` interleaved runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c

from tsconnector import TsClient
from tsconnector.protocol.lookup import pool_of

SERIES, POINTS = 30, 100
PREFIX = "benchcl."


def free_ports(count: int) -> list[int]:
    """``count`` free TCP ports on 127.0.0.1 whose back-end twin (+10) is free too."""
    ports: list[int] = []
    socks = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
            port = sock.getsockname()[1]
            if port + 10 < 65536 and all(abs(port - p) != 10 for p in ports):
                ports.append(port)
    finally:
        for sock in socks:
            sock.close()
    return ports


@contextlib.contextmanager
def embedded_cluster(pools: int) -> Iterator[c.Hostlist]:
    """``pools`` embedded servers in subprocesses, one per pool, listing one topology."""
    ports = free_ports(pools)
    layout = {"servers": [{"name": f"127.0.0.1:{p + 10}", "pool": i}
                          for i, p in enumerate(ports)]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "topology.json"
        path.write_text(json.dumps(layout))
        servers: list[c.ServerProcess] = []
        try:
            for port in ports:
                servers.append(c.ServerProcess([
                    c.PYTHON, "-m", "tsconnector.server", "--host", "127.0.0.1",
                    "--port", str(port), "--server-port", str(port + 10),
                    "--topology", str(path),
                ]))
            yield [("127.0.0.1", p) for p in ports]
        finally:
            for server in servers:
                server.stop()


def make_batches(count: int) -> list[dict[str, list[tuple[int, float]]]]:
    names = [f"{PREFIX}{i:02d}" for i in range(SERIES)]
    return [
        {name: [(c.T0 + b * POINTS + j, float(j)) for j in range(POINTS)] for name in names}
        for b in range(count)
    ]


class Result:
    """One run: seconds, requests sent, and what SiriDB would forward."""

    def __init__(self, seconds: float, requests: int, fwd_requests: int, fwd_points: int,
                 cpu: float) -> None:
        self.seconds = seconds
        self.requests = requests
        self.fwd_requests = fwd_requests
        self.fwd_points = fwd_points
        self.cpu = cpu


async def drop_series(hosts: dict[tuple[str, int], Any], args: Any) -> None:
    """Drop the benchmark's series on every server (the embedded ones do not share)."""
    for address in hosts:
        async with TsClient(args.user, args.password, args.db, [address]) as client:
            await client.query(f"drop series /^{PREFIX.replace('.', '[.]')}.*$/ "
                               "set ignore_threshold true")


async def run_case(hosts: c.Hostlist, args: Any, routed: bool,
                   batches: list[dict[str, Any]]) -> Result:
    client = TsClient(args.user, args.password, args.db, hosts, discover=True)
    await client.connect()
    try:
        topology = await client.refresh_topology()
        num_pools = topology.num_pools
        pool_of_host = {(s.host, s.port): s.pool for s in client.stats()}
    finally:
        client.close()
        await client.wait_closed()
    await drop_series(pool_of_host, args)
    # per pool: the series and points of one batch (every batch has the same series)
    share = [0] * num_pools
    for name, points in batches[0].items():
        share[pool_of(name, num_pools)] += len(points)
    batch_points = sum(share)
    client = TsClient(args.user, args.password, args.db, hosts, discover=routed)
    await client.connect()
    try:
        before = {(s.host, s.port): s.requests for s in client.stats()}
        queue = iter(batches)

        async def worker() -> None:
            for batch in queue:
                await client.insert(batch)

        cpu0, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.in_flight)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
        sent = {(s.host, s.port): s.requests - before.get((s.host, s.port), 0)
                for s in client.stats()}
        requests = sum(sent.values())
        if routed:
            stats = client.routing_stats
            assert stats is not None
            # a fallback part is sent to a server of another pool: all of it forwarded
            fwd_requests = stats.fallback_parts
            fwd_points = int(stats.fallback_parts * batch_points / num_pools)
        else:
            fwd_requests = fwd_points = 0
            for address, count in sent.items():
                own = pool_of_host.get(address)
                others = [p for p in range(num_pools) if p != own and share[p]]
                fwd_requests += count * len(others)
                fwd_points += count * sum(share[p] for p in others)
        return Result(seconds, requests, fwd_requests, fwd_points, cpu)
    finally:
        client.close()
        await client.wait_closed()


async def bench(hosts: c.Hostlist, args: Any) -> None:
    batches = make_batches(args.batches)
    points = SERIES * POINTS * len(batches)
    results: dict[str, list[Result]] = {"random": [], "routed": []}
    for run in range(args.runs):
        order = ["random", "routed"] if run % 2 == 0 else ["routed", "random"]
        for label in order:
            results[label].append(await run_case(hosts, args, label == "routed", batches))
    rows = []
    base = statistics.median(r.seconds for r in results["random"])
    for label in ("random", "routed"):
        runs = results[label]
        seconds = statistics.median(r.seconds for r in runs)
        rows.append([
            label,
            args.in_flight,
            points / seconds,
            statistics.median(r.requests for r in runs),
            statistics.median(r.fwd_requests for r in runs),
            statistics.median(r.fwd_points for r in runs),
            statistics.median(r.cpu for r in runs) / points * 1e6,
            f"{base / seconds:.2f}x",
        ])
    c.print_table(
        f"insert {len(batches)} batches of {SERIES} series x {POINTS} points "
        f"({points:,} points) per run",
        ["client", "in flight", "points/s", "requests", "fwd requests", "fwd points",
         "client us/pt", "vs random"],
        rows,
    )


def main() -> None:
    parser = c.base_parser(__doc__)
    parser.add_argument("--batches", type=int, default=200, help="batches per run (200)")
    parser.add_argument("--in-flight", type=int, default=4, help="inserts in flight (4)")
    parser.add_argument("--pools", type=int, default=3,
                        help="pools of the embedded cluster (3; ignored with --hosts)")
    args = parser.parse_args()
    args.runs = max(args.runs, 5)
    print(f"bench_cluster: {c.describe_env()}; median of {args.runs} runs")
    if args.hosts:
        hosts = c.parse_hosts(args.hosts)
        print(f"servers: {', '.join(f'{h}:{p}' for h, p in hosts)}")
        asyncio.run(bench(hosts, args))
        return
    with embedded_cluster(args.pools) as hosts:
        print(f"servers: {args.pools} embedded servers (subprocesses) as a "
              f"{args.pools}-pool topology (test double: nothing is forwarded)")
        asyncio.run(bench(hosts, args))


if __name__ == "__main__":
    main()
