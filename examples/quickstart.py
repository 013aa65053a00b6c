"""Quickstart: insert a few thousand points and read them back.

Runs against an embedded server started in-process, or against the servers named in
``TSCONNECTOR_HOSTS=host:port,host:port`` (a real SiriDB cluster, database ``dbtest``,
user ``iris``/``siri``, unless ``TSCONNECTOR_DB``/``_USER``/``_PASSWORD`` say otherwise).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from contextlib import AsyncExitStack

from tsconnector import TsClient
from tsconnector.server import EmbeddedServer

SERIES = [f"quickstart.sensor-{i}" for i in range(5)]
POINTS_PER_SERIES = 1_000


def hosts_from_env() -> list[tuple[str, int]]:
    """Parse ``TSCONNECTOR_HOSTS`` (``host:port,host:port``); empty when unset."""
    spec = os.environ.get("TSCONNECTOR_HOSTS", "").strip()
    hosts = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        host, _, port = item.rpartition(":")
        hosts.append((host or "127.0.0.1", int(port)))
    return hosts


def make_points(index: int, start: int) -> list[list[float | int]]:
    """One point a minute: a sine wave with a different phase for every sensor."""
    return [
        [start + minute * 60, round(20 + 5 * math.sin(minute / 60 + index), 3)]
        for minute in range(POINTS_PER_SERIES)
    ]


async def main() -> None:
    async with AsyncExitStack() as stack:
        hosts = hosts_from_env()
        where = "the servers in TSCONNECTOR_HOSTS"
        if not hosts:
            server = await stack.enter_async_context(EmbeddedServer(port=0))
            hosts = [(server.host, server.port)]
            where = f"an embedded server on {server.host}:{server.port}"
        client = TsClient(
            os.environ.get("TSCONNECTOR_USER", "iris"),
            os.environ.get("TSCONNECTOR_PASSWORD", "siri"),
            os.environ.get("TSCONNECTOR_DB", "dbtest"),
            hosts,
        )
        await stack.enter_async_context(client)
        print(f"Connected to {where}.")

        start = (int(time.time()) // 3600 - 24) * 3600
        data = {name: make_points(i, start) for i, name in enumerate(SERIES)}
        t0 = time.perf_counter()
        answer = await client.insert(data)
        elapsed = time.perf_counter() - t0
        print(f"{answer['success_msg']} ({elapsed * 1000:.1f} ms)")

        stats = await client.query(
            "select count() prefix 'count:', min() prefix 'min:', max() prefix 'max:', "
            "mean() prefix 'mean:' from /quickstart\\.sensor-.*/"
        )
        print(f"\n{'series':<26}{'points':>8}{'min':>9}{'max':>9}{'mean':>9}")
        for name in SERIES:
            count = stats[f"count:{name}"][0][1]
            low, high = stats[f"min:{name}"][0][1], stats[f"max:{name}"][0][1]
            mean = stats[f"mean:{name}"][0][1]
            print(f"{name:<26}{count:>8}{low:>9.2f}{high:>9.2f}{mean:>9.2f}")

        hourly = await client.query(f'select mean(1h) from "{SERIES[0]}" before {start + 4 * 3600}')
        print(f"\nFirst hourly means of {SERIES[0]}:")
        for ts, value in hourly[SERIES[0]]:
            stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))
            print(f"  {stamp} UTC  {value:.3f}")

        total = await client.query("count series /quickstart\\..*/")
        print(f"\n{total['series']} series, {len(SERIES) * POINTS_PER_SERIES} points. Done.")


if __name__ == "__main__":
    asyncio.run(main())
