"""Quickstart: insert a few thousand points and read them back.

Runs against an embedded server started in-process, or against the servers named in
``TSCONNECTOR_DSN`` (``siridb://user:password@host:port,host:port/dbname``), for
example a real SiriDB cluster. Timestamps are ``datetime`` objects that the client
converts exactly to the database's precision, so it works for databases in s, ms, us
or ns. Each run writes its own series (``quickstart.<run>.sensor-N``) and reports only
what it inserted itself. Needs nothing but ``pip install tsconnector``.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import secrets
import sys
from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone

from tsconnector import Name, Regex, TsClient, from_db_time
from tsconnector.server import EmbeddedServer

SENSORS = 5
POINTS_PER_SENSOR = 1_000


def make_points(index: int, start: datetime) -> list[list[object]]:
    """One point a minute: a sine wave with a different phase for every sensor."""
    return [
        [start + timedelta(minutes=minute), round(20 + 5 * math.sin(minute / 60 + index), 3)]
        for minute in range(POINTS_PER_SENSOR)
    ]


class NotConnected(Exception):
    """No host of the DSN could be reached."""


async def open_client(stack: AsyncExitStack) -> tuple[TsClient, str]:
    """A client for ``TSCONNECTOR_DSN``, or for an embedded server when it is unset."""
    if os.environ.get("TSCONNECTOR_DSN", "").strip():
        client = TsClient.from_dsn()  # reads TSCONNECTOR_DSN
        where = "the servers in TSCONNECTOR_DSN"
    else:
        server = await stack.enter_async_context(EmbeddedServer(port=0))
        client = TsClient("iris", "siri", "dbtest", [(server.host, server.port)])
        where = f"an embedded server on {server.host}:{server.port}"
    errors = await client.connect()
    stack.push_async_callback(client.wait_closed)
    stack.callback(client.close)
    if not client.connected:
        reasons = "; ".join(str(e) or type(e).__name__ for e in errors if e is not None)
        raise NotConnected(f"cannot connect to {where}: {reasons}")
    return client, where


async def main() -> None:
    async with AsyncExitStack() as stack:
        client, where = await open_client(stack)
        precision = await client.db_time_precision()
        print(f"Connected to {where} (time precision: {['s', 'ms', 'us', 'ns'][precision]}).")

        run = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + secrets.token_hex(2)
        names = [f"quickstart.{run}.sensor-{i}" for i in range(SENSORS)]
        this_run = Regex(re.escape(f"quickstart.{run}.") + ".*")
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        start = now - timedelta(minutes=POINTS_PER_SENSOR)
        answer = await client.insert({name: make_points(i, start) for i, name in enumerate(names)})
        print(answer["success_msg"])

        stats = await client.query(
            "select count() prefix 'count:', min() prefix 'min:', max() prefix 'max:', "
            "mean() prefix 'mean:' from $1",
            params=[this_run],
        )
        print(f"\n{'series (this run)':<20}{'points':>8}{'min':>9}{'max':>9}{'mean':>9}")
        for name in names:
            count = stats[f"count:{name}"][0][1]
            low, high = stats[f"min:{name}"][0][1], stats[f"max:{name}"][0][1]
            mean = stats[f"mean:{name}"][0][1]
            print(f"{name.rsplit('.', 1)[1]:<20}{count:>8}{low:>9.2f}{high:>9.2f}{mean:>9.2f}")

        hourly = await client.query(
            "select mean($2) from $1 before $3",
            params=[Name(names[0]), timedelta(hours=1), start + timedelta(hours=4)],
        )
        print(f"\nFirst hourly means of {names[0]}:")
        for ts, value in hourly[names[0]]:
            stamp = from_db_time(ts, precision).strftime("%Y-%m-%d %H:%M")
            print(f"  {stamp} UTC  {value:.3f}")

        total = await client.query("count series $1", params=[this_run])
        points = sum(stats[f"count:{name}"][0][1] for name in names)
        print(f"\nThis run inserted {points} points into {total['series']} series. Done.")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (NotConnected, ValueError) as exc:  # ValueError: a malformed TSCONNECTOR_DSN
        sys.exit(f"quickstart: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)
