"""An ingest daemon: a simulated sensor feed written through a BufferedWriter.

    TSCONNECTOR_DSN=siridb://iris:siri@127.0.0.1:9000/dbtest \\
        python examples/ingest_daemon.py --spool-dir ./ingest-spool

SIGTERM or Ctrl-C stop it gracefully: the feed stops, the writer sends every point it
holds, and the daemon exits 0 after printing how many points it produced and sent.
With ``--spool-dir`` every batch is on disk before it is sent, so even a crash or a
database that is down at shutdown loses nothing: the next start sends what is left.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import signal
import sys
import time
from collections.abc import AsyncIterator

from tsconnector import BufferedWriter, TsClient, to_db_time


async def sensor_feed(
    sensors: int, rate: float, precision: int, stop: asyncio.Event
) -> AsyncIterator[tuple[str, int, float]]:
    """Readings ``(series, timestamp, value)`` of ``sensors`` sensors, ``rate`` rounds a second.

    Timestamps follow the wall clock in database units and always increase (a fast feed
    on a database in seconds runs ahead of the clock).
    """
    last = 0
    tick = 0
    while not stop.is_set():
        ts = max(to_db_time(time.time_ns(), precision, rounding="floor"), last + 1)
        last = ts
        for i in range(sensors):
            yield f"sensor.{i}.temperature", ts, round(20 + 5 * math.sin(tick / 50 + i), 3)
        tick += 1
        try:  # pace the feed; wake at once on stop
            await asyncio.wait_for(stop.wait(), 1 / rate * random.uniform(0.5, 1.5))
        except asyncio.TimeoutError:
            pass


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    client = TsClient.from_dsn(args.dsn)
    await client.connect()
    writer = BufferedWriter(client, spool_dir=args.spool_dir, max_delay=args.max_delay)
    await writer.start()
    produced = 0
    try:
        precision = await client.db_time_precision()
        print(f"ingesting from {args.sensors} sensors; SIGTERM or Ctrl-C to stop", flush=True)
        async for series, ts, value in sensor_feed(args.sensors, args.rate, precision, stop):
            await writer.add(series, ts, value)
            produced += 1
            if produced % args.report_every == 0:
                stats = writer.stats()
                print(f"produced {produced} points, sent {stats.sent}", flush=True)
    finally:
        await writer.close(timeout=args.close_timeout)
        stats = writer.stats()
        client.close()
        await client.wait_closed()
    left = stats.spooled + stats.buffered
    print(
        f"stopped: produced {produced} points, sent {stats.sent}, failed {stats.failed}, "
        f"left in the spool {left}",
        flush=True,
    )
    return 0 if stats.failed == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", default=None, help="default: $TSCONNECTOR_DSN")
    parser.add_argument("--sensors", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="readings per sensor per second")
    parser.add_argument("--spool-dir", default=None, help="keep unsent batches on disk here")
    parser.add_argument("--max-delay", type=float, default=1.0, help="seconds a point may wait")
    parser.add_argument("--report-every", type=int, default=1000, help="print progress every N")
    parser.add_argument("--close-timeout", type=float, default=30.0,
                        help="seconds to send what is left at shutdown")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args))
    except ValueError as exc:  # no or a malformed DSN
        print(f"ingest_daemon: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
