"""HostPool under faults: three embedded servers behind FaultProxy instances."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from shared_helpers import wait_state

import tsconnector.client
from tsconnector.client import TsClient
from tsconnector.events import HostEvent, HostState
from tsconnector.exceptions import (
    InsertOutcomeUnknown,
    PoolError,
    TsConnectionError,
    TsTimeoutError,
)
from tsconnector.testing.proxy import FaultProxy

FAST: dict[str, Any] = {
    "timeout": 1.0,
    "initial_retry_wait": 0.05,
    "max_wait_retry": 0.4,
    "inactive_time": 0.5,
    "pool_retry_wait": 0.05,
}
DOCUMENTED = (TsTimeoutError, TsConnectionError, PoolError)
PACKAGE_DIR = Path(tsconnector.client.__file__).resolve().parent


@dataclass
class Cluster:
    """Three independent embedded servers, each behind its own proxy."""

    servers: list[Any]
    proxies: list[FaultProxy]

    def hostlist(self, *options: dict[str, Any]) -> list[tuple[Any, ...]]:
        opts = list(options) + [{}] * (len(self.proxies) - len(options))
        return [
            ("127.0.0.1", p.port, o) if o else ("127.0.0.1", p.port)
            for p, o in zip(self.proxies, opts)
        ]


@pytest.fixture
async def cluster(
    embedded_server_factory: Callable[..., Awaitable[Any]],
    fault_proxy: Callable[..., Awaitable[FaultProxy]],
) -> Cluster:
    servers = [await embedded_server_factory() for _ in range(3)]
    proxies = [await fault_proxy(s.port) for s in servers]
    return Cluster(servers, proxies)


def make_client(hostlist: list[tuple[Any, ...]], **options: Any) -> TsClient:
    return TsClient("iris", "siri", "dbtest", hostlist, **{**FAST, **options})


def requests_by_port(client: TsClient) -> dict[int, int]:
    return {s.port: s.requests for s in client.stats()}




async def run_queries(
    client: TsClient,
    total: int,
    workers: int,
    timeout: float,
    at: dict[int, Callable[[], Any]] | None = None,
) -> list[Any]:
    """Run ``total`` queries on ``workers`` concurrent loops; return results or exceptions.

    ``at`` maps a number of finished queries to an action run at that point of the stream.
    """
    loop = asyncio.get_running_loop()
    outcomes: list[Any] = []
    counter = iter(range(total))
    actions = dict(at or {})
    worst = 0.0

    async def worker() -> None:
        nonlocal worst
        for _ in counter:
            start = loop.time()
            try:
                outcomes.append(await client.query("show version", timeout=timeout))
            except DOCUMENTED as exc:
                outcomes.append(exc)
            worst = max(worst, loop.time() - start)
            action = actions.pop(len(outcomes), None)
            if action is not None:
                action()

    await asyncio.gather(*(worker() for _ in range(workers)))
    assert worst <= timeout + 0.5, f"a query took {worst:.2f} s with timeout {timeout}"
    return outcomes


@pytest.mark.slow
async def test_server_killed_during_10000_queries(cluster: Cluster) -> None:
    client = make_client(cluster.hostlist())
    await client.connect()
    victim = cluster.proxies[0]
    loop = asyncio.get_running_loop()
    killed: list[int] = []
    outcomes = await run_queries(
        client,
        10_000,
        25,
        timeout=2.0,
        at={3000: lambda: killed.append(victim.kill()), 7000: victim.revive},
    )
    assert killed[0] == 1  # the client's connection was cut with queries in flight
    assert len(outcomes) == 10_000
    failures = [o for o in outcomes if isinstance(o, Exception)]
    assert all(isinstance(f, DOCUMENTED) for f in failures)
    assert len(failures) < 100  # queries move to the surviving hosts
    assert victim.refused >= 1  # the client kept trying to reconnect while it was down

    # After the server returns, traffic spreads over all hosts within max_wait_retry.
    revived = loop.time()
    limit = FAST["max_wait_retry"] + FAST["timeout"]  # one backoff plus one connect
    await wait_state(client, victim.port, HostState.READY, limit)
    assert loop.time() - revived <= limit
    before = requests_by_port(client)
    await run_queries(client, 1500, 10, timeout=2.0)
    after = requests_by_port(client)
    for proxy in cluster.proxies:
        assert after[proxy.port] - before[proxy.port] > 300
    client.close()
    await client.wait_closed()


async def test_backup_hosts_only_when_no_other_is_ready(cluster: Cluster) -> None:
    client = make_client(cluster.hostlist({}, {}, {"backup": True}))
    await client.connect()
    backup = cluster.proxies[2].port
    await run_queries(client, 2000, 20, timeout=2.0)
    assert requests_by_port(client)[backup] == 0

    for proxy in cluster.proxies[:2]:
        proxy.kill()
    for proxy in cluster.proxies[:2]:
        await wait_state(client, proxy.port, HostState.DOWN, 5)
    before = requests_by_port(client)
    outcomes = await run_queries(client, 500, 10, timeout=2.0)
    assert all(o == {"data": [{"name": "version", "value": "2.0.55"}]} for o in outcomes)
    after = requests_by_port(client)
    assert after[backup] - before[backup] == 500

    for proxy in cluster.proxies[:2]:
        proxy.revive()
    for proxy in cluster.proxies[:2]:
        await wait_state(client, proxy.port, HostState.READY, 5)
    before = requests_by_port(client)
    await run_queries(client, 500, 10, timeout=2.0)
    assert requests_by_port(client)[backup] == before[backup]
    client.close()
    await client.wait_closed()


@pytest.mark.slow
async def test_weights_share_traffic(cluster: Cluster) -> None:
    client = make_client(cluster.hostlist({"weight": 1}, {"weight": 3}, {"weight": 6}))
    await client.connect()
    outcomes = await run_queries(client, 20_000, 50, timeout=5.0)
    assert not [o for o in outcomes if isinstance(o, Exception)]
    counts = requests_by_port(client)
    total = sum(counts.values())
    assert total == 20_000
    for proxy, expected in zip(cluster.proxies, (10.0, 30.0, 60.0)):
        share = 100.0 * counts[proxy.port] / total
        assert abs(share - expected) <= 3.0, (proxy.port, share)
    client.close()
    await client.wait_closed()


async def test_half_open_connection_detected_by_keepalive(cluster: Cluster) -> None:
    client = make_client(cluster.hostlist(), keepalive_interval=0.2, ping_timeout=0.3)
    events: list[HostEvent] = []
    client.on_host_event(events.append)
    await client.connect()
    stalled = cluster.proxies[1]
    stalled.stall()  # current connections freeze; sockets stay open; new ones work
    await wait_state(client, stalled.port, HostState.DOWN, 5)
    down = [e for e in events if e.port == stalled.port and e.new is HostState.DOWN]
    assert down
    assert "keepalive" in str(down[0].error)
    await wait_state(client, stalled.port, HostState.READY, 5)
    stats = {s.port: s for s in client.stats()}
    assert stats[stalled.port].reconnects == 1
    assert stalled.connections == 2  # the frozen one and its replacement
    before = requests_by_port(client)
    await run_queries(client, 300, 5, timeout=2.0)
    assert requests_by_port(client)[stalled.port] > before[stalled.port]
    client.close()
    await client.wait_closed()
    stalled.resume()


@pytest.mark.slow
async def test_inserts_during_kills_lose_nothing_and_never_duplicate(cluster: Cluster) -> None:
    client = make_client(cluster.hostlist())
    await client.connect()
    base = 1_700_000_000
    acked: set[int] = set()
    unknown: set[int] = set()
    failed: set[int] = set()
    payloads_ok: list[bool] = []
    stop = asyncio.Event()
    rng = random.Random(7)

    async def chaos() -> None:
        while not stop.is_set():
            proxy = rng.choice(cluster.proxies)
            proxy.kill()
            await asyncio.sleep(0.03)
            proxy.revive()
            await asyncio.sleep(0.05)

    async def writer(first: int, count: int) -> None:
        for ts in range(first, first + count):
            data = {"ins": [[ts, ts - base]]}
            try:
                await client.insert(data, timeout=3.0)
            except InsertOutcomeUnknown as exc:
                payloads_ok.append(exc.payload is data)
                unknown.add(ts)
            except (TsTimeoutError, PoolError):
                failed.add(ts)  # never written, or (timeout) outcome unknown
            else:
                acked.add(ts)

    chaos_task = asyncio.ensure_future(chaos())
    await asyncio.gather(*(writer(base + i * 300, 300) for i in range(10)))
    stop.set()
    await chaos_task
    for proxy in cluster.proxies:
        proxy.revive()
    assert len(acked) + len(unknown) + len(failed) == 3000
    assert len(acked) > 2500
    assert unknown, "the kills should have hit some inserts in flight"
    assert all(payloads_ok)

    stored: list[int] = []
    total_counted = 0
    for server in cluster.servers:
        async with TsClient("iris", "siri", "dbtest", [("127.0.0.1", server.port)]) as direct:
            points = (await direct.query('select * from "ins"')).get("ins", [])
            counted = (await direct.query('select count() from "ins"')).get("ins", [[0, 0]])
        stored.extend(ts for ts, _value in points)
        total_counted += counted[0][1]
    assert total_counted == len(stored)
    assert len(stored) == len(set(stored)), "an insert was stored twice"
    assert acked <= set(stored), "an acknowledged insert is missing"
    assert set(stored) <= acked | unknown | failed
    client.close()
    await client.wait_closed()


def _own_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks running client code (connection, pool, client modules)."""
    current = asyncio.current_task()
    found = []
    for task in asyncio.all_tasks():
        if task is current or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if (task.get_name().startswith("tsconnector:") and "testing" not in filename) or (
            PACKAGE_DIR
            and filename.startswith(str(PACKAGE_DIR))
            and not any(part in filename for part in ("testing", "server"))
        ):
            found.append(task)
    return found


async def test_close_during_reconnect_backoff(cluster: Cluster) -> None:
    client = make_client(cluster.hostlist(), initial_retry_wait=30.0, max_wait_retry=60.0)
    await client.connect()
    for proxy in cluster.proxies:
        proxy.kill()
    for proxy in cluster.proxies:
        await wait_state(client, proxy.port, HostState.DOWN, 5)
    assert len(_own_tasks()) == 3  # one backoff sleeper per host
    loop = asyncio.get_running_loop()
    start = loop.time()
    client.close()
    await asyncio.wait_for(client.wait_closed(), 2)
    assert loop.time() - start < 0.5
    assert _own_tasks() == []
    assert all(s.state is HostState.CLOSED for s in client.stats())
