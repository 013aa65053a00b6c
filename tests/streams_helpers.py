"""Helpers of the streams tests: a reference window computation and a loop-owned server."""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import defaultdict
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from tsconnector import TsClient
from tsconnector.server import EmbeddedServer
from tsconnector.streams.points import StatPoint
from tsconnector.timeutil import NS_PER_UNIT

T = TypeVar("T")

PRECISIONS = ("s", "ms", "us", "ns")


def reference_windows(
    points_ns: Iterable[tuple[int, float]], start: int, width: int, count: int
) -> list[StatPoint]:
    """BTrDB windows by definition: [start + k*width, start + (k+1)*width), k < count."""
    groups: dict[int, list[float]] = defaultdict(list)
    end = start + width * count
    for t, v in points_ns:
        if start <= t < end:
            groups[(t - start) // width].append(v)
    return [
        StatPoint(
            start + k * width,
            min(vs),
            math.fsum(vs) / len(vs),
            max(vs),
            len(vs),
            statistics.pstdev(vs),
        )
        for k, vs in sorted(groups.items())
    ]


def assert_windows_equal(got: list[StatPoint], expected: list[StatPoint]) -> None:
    """Times, counts, min and max exactly; mean and stddev to float rounding."""
    assert [(p.time, p.count, p.min, p.max) for p in got] == [
        (p.time, p.count, p.min, p.max) for p in expected
    ]
    for g, e in zip(got, expected):
        assert math.isclose(g.mean, e.mean, rel_tol=1e-9, abs_tol=1e-9), (g, e)
        assert math.isclose(g.stddev, e.stddev, rel_tol=1e-6, abs_tol=1e-6), (g, e)


def requests(client: TsClient) -> int:
    """Requests the client has sent so far (all hosts)."""
    return sum(h.requests for h in client.stats())


def unit_ns(precision: str) -> int:
    """Nanoseconds per unit of a precision name."""
    return NS_PER_UNIT[PRECISIONS.index(precision)]


class LoopServer:
    """An event loop of its own with an embedded server (one database per precision).

    For hypothesis tests, which are synchronous: ``run(coro)`` runs a coroutine on the
    loop, which serves the server meanwhile.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = EmbeddedServer(
            port=0, databases=[(f"db_{p}", p) for p in PRECISIONS]
        )
        self.clients: dict[str, TsClient] = {}
        self.run(self._start())

    async def _start(self) -> None:
        await self.server.start()
        for p in PRECISIONS:
            client = TsClient("iris", "siri", f"db_{p}", [("127.0.0.1", self.server.port)])
            await client.connect()
            self.clients[p] = client

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the server's loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """Close the clients, the server and the loop."""

        async def stop() -> None:
            for client in self.clients.values():
                client.close()
                await client.wait_closed()
            self.server.close()
            await self.server.wait_closed()

        self.run(stop())
        self.loop.close()
