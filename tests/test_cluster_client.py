"""The cluster-aware client (``discover=True``) on embedded servers listing a 3-pool
topology: routing per owning pool, splitting, status flags, fallbacks, partial failures."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from shared_helpers import wait_state

from tsconnector import TsClient
from tsconnector.events import HostState
from tsconnector.exceptions import (
    InsertError,
    InsertOutcomeUnknown,
    InsertPartlyApplied,
    TsTimeoutError,
)
from tsconnector.pool import Host, HostPool
from tsconnector.testing import EmbeddedCluster, FaultProxy

FAST: dict[str, Any] = {
    "timeout": 2.0,
    "initial_retry_wait": 0.05,
    "max_wait_retry": 0.2,
    "inactive_time": 0.5,
    "pool_retry_wait": 0.05,
}
NAMES = [f"sensor.{i:03d}" for i in range(60)]


@pytest.fixture
async def cluster() -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(pools=3) as started:
        yield started


def client_for(hostlist: list[tuple[str, int]], **options: Any) -> TsClient:
    return TsClient("iris", "siri", "dbtest", hostlist, discover=True, **{**FAST, **options})


def batch(names: list[str], ts: int = 1) -> dict[str, list[list[int]]]:
    return {name: [[ts, i], [ts + 1, i]] for i, name in enumerate(names)}




def stored_once(cluster: EmbeddedCluster, expected: dict[str, set[int]]) -> None:
    """Every expected point is stored exactly once across the servers."""
    for name, stamps in expected.items():
        found: list[int] = []
        for server in cluster.servers:
            series = server.database("dbtest").series.get(name)
            if series is not None:
                found.extend(series.ts)
        assert sorted(found) == sorted(stamps), name


@pytest.mark.parametrize("replicas", [1, 2])
async def test_each_series_lands_on_its_owning_pool(replicas: int) -> None:
    async with EmbeddedCluster(pools=3, replicas=replicas) as cluster, client_for(
        cluster.hostlist()
    ) as client:
        for start in range(0, len(NAMES), 20):
            await client.insert(batch(NAMES[start:start + 20]))
        for server, pool, arrivals in zip(cluster.servers, cluster.pools, cluster.arrivals()):
            assert arrivals.foreign_points == 0, f"{cluster.name_of(server)} got foreign points"
            assert all(cluster.pool_of(name) == pool for name in arrivals.series)
        per_pool = [0] * 3
        for pool, arrivals in zip(cluster.pools, cluster.arrivals()):
            per_pool[pool] += arrivals.points
        assert per_pool == [2 * sum(cluster.pool_of(n) == p for n in NAMES) for p in range(3)]
        stats = client.routing_stats
        assert stats is not None
        assert stats.fallback_parts == 0
        assert stats.routed_parts == 9
        assert stats.split_inserts == 3


async def test_a_batch_spanning_pools_is_one_request_per_pool(cluster: EmbeddedCluster) -> None:
    async with client_for(cluster.hostlist()) as client:
        answer = await client.insert(batch(NAMES))
        assert answer == {"success_msg": f"Successfully inserted {2 * len(NAMES)} point(s)."}
        assert [a.requests for a in cluster.arrivals()] == [1, 1, 1]
        one_pool = [n for n in NAMES if cluster.pool_of(n) == 2]
        cluster.reset_arrivals()
        await client.insert(batch(one_pool, ts=10))
        assert [a.requests for a in cluster.arrivals()] == [0, 0, 1]
        stored_once(cluster, {n: {1, 2} | ({10, 11} if n in one_pool else set())
                              for n in NAMES})


async def test_servers_missing_from_the_hostlist_are_added(cluster: EmbeddedCluster) -> None:
    async with client_for(cluster.hostlist([0])) as client:
        stats = client.stats()
        assert sorted(s.port for s in stats) == sorted(s.port for s in cluster.servers)
        assert [s.discovered for s in stats] == [False, True, True]
        assert all(s.state is HostState.READY for s in stats)
        assert {s.pool for s in stats} == {0, 1, 2}
        topology = client.topology
        assert topology is not None
        assert topology.num_pools == 3
        assert topology.routable
        await client.insert(batch(NAMES))
        assert [a.foreign_points for a in cluster.arrivals()] == [0, 0, 0]


async def test_reindexing_sends_whole_inserts_to_a_fit_server(cluster: EmbeddedCluster) -> None:
    async with client_for(cluster.hostlist()) as client:
        cluster.set_status(cluster.servers[1], "running | re-indexing")
        topology = await client.refresh_topology()
        assert topology.reindexing
        assert not topology.routable
        for i in range(6):
            await client.insert(batch(NAMES, ts=10 * i))
            await client.query("show version")
        arrivals = cluster.arrivals()
        assert sum(a.requests for a in arrivals) == 6  # not split
        assert arrivals[1].requests == 0  # the re-indexing server is not chosen
        by_port = {s.port: s for s in client.stats()}
        assert by_port[cluster.servers[1].port].requests == 0
        assert by_port[cluster.servers[1].port].status == "running | re-indexing"
        stats = client.routing_stats
        assert stats is not None
        assert stats.unrouted_inserts == 6
        cluster.set_status(cluster.servers[1], "running")
        await client.refresh_topology()
        cluster.reset_arrivals()
        await client.insert(batch(NAMES, ts=100))
        assert [a.requests for a in cluster.arrivals()] == [1, 1, 1]


@pytest.mark.parametrize("status", ["running | synchronizing", "running | backup-mode",
                                    "running | queue-full"])
async def test_unfit_servers_are_not_chosen_while_others_serve(
    cluster: EmbeddedCluster, status: str
) -> None:
    async with client_for(cluster.hostlist()) as client:
        unfit = cluster.servers[2]
        cluster.set_status(unfit, status)
        await client.refresh_topology()
        for i in range(5):
            await client.insert(batch(NAMES, ts=10 * i))
            await client.query("show version")
        assert cluster.arrivals()[2].requests == 0
        assert {s.port: s.requests for s in client.stats()}[unfit.port] == 0
        stats = client.routing_stats
        assert stats is not None
        assert stats.fallback_parts == 5
        stored_once(cluster, {n: {10 * i + k for i in range(5) for k in (0, 1)} for n in NAMES})


async def test_unfit_server_still_serves_when_nothing_else_can(
    cluster: EmbeddedCluster,
) -> None:
    async with client_for(cluster.hostlist([2])) as client:
        cluster.set_status(cluster.servers[2], "running | synchronizing")
        await client.refresh_topology()
        for server in cluster.servers[:2]:
            server.close()
            await server.wait_closed()
        for server in cluster.servers[:2]:
            await wait_state(client, server.port, HostState.DOWN)
        assert await client.query("show version")


async def test_a_down_pool_falls_back_to_any_server(cluster: EmbeddedCluster) -> None:
    async with client_for(cluster.hostlist()) as client:
        down = cluster.servers[2]
        down.close()
        await down.wait_closed()
        await wait_state(client, down.port, HostState.DOWN)
        await client.insert(batch(NAMES))
        arrivals = cluster.arrivals()
        pool2 = sum(cluster.pool_of(n) == 2 for n in NAMES)
        assert arrivals[0].foreign_points + arrivals[1].foreign_points == 2 * pool2
        stats = client.routing_stats
        assert stats is not None
        assert stats.fallback_parts == 1
        assert stats.routed_parts == 2
        stored_once(cluster, {n: {1, 2} for n in NAMES})


async def test_partly_rejected_insert_reports_what_was_stored(cluster: EmbeddedCluster) -> None:
    async with client_for(cluster.hostlist()) as client:
        data: dict[str, Any] = batch(NAMES)
        bad = next(n for n in NAMES if cluster.pool_of(n) == 1)
        data[bad] = [[1, True]]  # the server refuses bool values
        with pytest.raises(InsertPartlyApplied) as caught:
            await client.insert(data)
        error = caught.value
        assert isinstance(error, InsertOutcomeUnknown)  # handled like one by older callers
        assert set(error.applied) == {n for n in NAMES if cluster.pool_of(n) != 1}
        assert set(error.not_applied) == {n for n in NAMES if cluster.pool_of(n) == 1}
        assert error.unknown is None
        assert error.payload == error.not_applied
        assert len(error.errors) == 1
        assert isinstance(error.errors[0], InsertError)
        assert "pool 1 (20 series) not stored: InsertError" in str(error)
        stored = {n for n in NAMES if any(cluster.stored(n))}
        assert stored == set(error.applied)
        # re-sending what was not stored (fixed) completes the insert, no duplicates
        error.not_applied[bad] = [[1, 7], [2, 7]]
        await client.insert(error.not_applied)
        stored_once(cluster, {n: {1, 2} for n in NAMES})


async def test_nothing_stored_raises_the_plain_error(cluster: EmbeddedCluster) -> None:
    async with client_for(cluster.hostlist()) as client:
        data = {name: [[1, True]] for name in NAMES}
        with pytest.raises(InsertError) as caught:
            await client.insert(data)
        assert not isinstance(caught.value, InsertPartlyApplied)
        assert not any(any(cluster.stored(n)) for n in NAMES)


async def test_unknown_outcome_of_one_part(cluster: EmbeddedCluster) -> None:
    proxies = [await FaultProxy(*s.address).start() for s in cluster.servers]
    try:
        async with client_for([p.address for p in proxies], timeout=5.0) as client:
            proxies[0].stall()  # pool 0's server gets the part but its answer is held
            with pytest.raises(InsertPartlyApplied) as caught:
                await client.insert(batch(NAMES), timeout=1.5)
            error = caught.value
            assert set(error.unknown) == {n for n in NAMES if cluster.pool_of(n) == 0}
            assert set(error.applied) == {n for n in NAMES if cluster.pool_of(n) != 0}
            assert error.not_applied is None
            assert error.payload == error.unknown
            assert isinstance(error.errors[0], TsTimeoutError)
    finally:
        for proxy in proxies:
            await proxy.close()


@pytest.mark.slow
async def test_killed_mid_insert_loses_and_duplicates_nothing(cluster: EmbeddedCluster) -> None:
    proxies = [await FaultProxy(*s.address).start() for s in cluster.servers]
    names = NAMES[:24]
    total, workers = 80, 4
    outcomes: list[tuple[dict[str, Any], InsertOutcomeUnknown | None]] = []
    try:
        async with client_for([p.address for p in proxies], timeout=5.0) as client:
            counter = iter(range(total))

            async def worker() -> None:
                for i in counter:
                    data = {n: [[2 * i, i], [2 * i + 1, i]] for n in names}
                    try:
                        await client.insert(data, timeout=10)
                        outcomes.append((data, None))
                    except InsertOutcomeUnknown as exc:
                        outcomes.append((data, exc))
                    if len(outcomes) == total // 3:
                        proxies[1].kill()  # pool 1's server vanishes mid-stream

            await asyncio.gather(*(worker() for _ in range(workers)))
            # resolve: re-send what surely was not stored; check what is unknown
            for _data, exc in outcomes:
                if exc is None:
                    continue
                if isinstance(exc, InsertPartlyApplied):
                    if exc.not_applied:
                        await client.insert(exc.not_applied)
                    todo = exc.unknown or {}
                else:
                    todo = exc.payload
                missing = {
                    n: [p for p in points if not _stored_at(cluster, n, p[0])]
                    for n, points in todo.items()
                }
                missing = {n: p for n, p in missing.items() if p}
                if missing:
                    await client.insert(missing)
        assert len(outcomes) == total
        stats = client.routing_stats
        assert stats is not None
        assert stats.fallback_parts > 0
        stored_once(cluster, {n: set(range(2 * total)) for n in names})
        # pool 1's part went to other servers once its server was gone
        assert cluster.arrivals()[0].foreign_points + cluster.arrivals()[2].foreign_points > 0
    finally:
        for proxy in proxies:
            await proxy.close()


def _stored_at(cluster: EmbeddedCluster, name: str, ts: int) -> bool:
    for server in cluster.servers:
        series = server.database("dbtest").series.get(name)
        if series is not None and ts in series.ts:
            return True
    return False


async def test_periodic_refresh_sees_changes(cluster: EmbeddedCluster) -> None:
    async with client_for(cluster.hostlist(), discover_interval=0.05) as client:
        watcher = client._watcher
        assert watcher is not None
        cluster.set_status(cluster.servers[0], "running | backup-mode")
        topology = await asyncio.wait_for(watcher.next_refresh(), 5)
        server = topology.server(cluster.name_of(cluster.servers[0]))
        assert server is not None
        assert not server.fit
        assert {s.port: s.status for s in client.stats()}[cluster.servers[0].port] == (
            "running | backup-mode")


async def test_discovery_off_keeps_the_plain_client(cluster: EmbeddedCluster) -> None:
    async with TsClient("iris", "siri", "dbtest", cluster.hostlist([0]), **FAST) as client:
        assert client.topology is None
        assert client.routing_stats is None
        with pytest.raises(RuntimeError, match="discover=True"):
            await client.refresh_topology()
        await client.insert(batch(NAMES))
        assert [a.requests for a in cluster.arrivals()] == [1, 0, 0]


# ---------------------------------------------------------------- host choice


class _Conn:
    def __init__(self, in_flight: int) -> None:
        self.in_flight = in_flight
        self.ready = True


def _pool(*hosts: tuple[int, int]) -> HostPool:
    """A pool of connected, ready hosts given as (weight, requests in flight)."""
    loop = asyncio.new_event_loop()
    built = []
    for i, (weight, in_flight) in enumerate(hosts):
        host = Host("127.0.0.1", 1000 + i, weight)
        host.conn = _Conn(in_flight)  # type: ignore[assignment]
        host.state = HostState.READY
        built.append(host)
    pool = HostPool("u", "p", "db", built, loop=loop)
    loop.close()
    return pool


def test_least_outstanding_requests_per_weight() -> None:
    pool = _pool((1, 3), (1, 0), (1, 2))
    assert {pool.choose().port for _ in range(20)} == {1001}
    pool = _pool((3, 3), (1, 2))  # 3/3 = 1 request per weight unit against 2
    assert {pool.choose().port for _ in range(20)} == {1000}


def test_idle_hosts_are_chosen_by_weight() -> None:
    random.seed(7)
    pool = _pool((9, 0), (1, 0))
    picks = [pool.choose().port for _ in range(2000)]
    assert 0.8 < picks.count(1000) / len(picks) < 0.97


def test_tiers_fit_before_unfit_and_own_pool_first() -> None:
    pool = _pool((1, 0), (1, 5), (1, 9))
    pool.tiered = True
    a, b, c = pool.hosts
    a.cluster_pool, b.cluster_pool, c.cluster_pool = 0, 1, 1
    assert pool.choose(pool=1) is b  # its own pool, least loaded of the two
    b.fit = False
    assert pool.choose(pool=1) is c
    c.fit = False
    assert pool.choose(pool=1) is a  # a fit server elsewhere before an unfit one
    a.fit = False
    assert pool.choose(pool=1) is b  # nothing fit: unfit ones still serve
    c.backup = True
    a.fit = c.fit = True
    assert pool.choose(pool=1) is a  # a backup only when no other fit host


# ------------------------------------------------------- discovery details


async def test_discover_address_maps_or_skips_servers(cluster: EmbeddedCluster) -> None:
    wanted = cluster.servers[1].port
    seen: list[tuple[str, int]] = []

    def address(host: str, port: int) -> tuple[str, int] | None:
        seen.append((host, port))
        return (host, port - 10) if port - 10 == wanted else None

    async with client_for(cluster.hostlist([0]), discover_address=address) as client:
        assert sorted(s.port for s in client.stats()) == sorted(
            [cluster.servers[0].port, wanted])
        assert ("127.0.0.1", cluster.servers[2].port + 10) in seen


async def test_a_dropped_server_leaves_the_pool_but_user_hosts_stay(
    cluster: EmbeddedCluster,
) -> None:
    async with client_for(cluster.hostlist([0, 1])) as client:
        assert len(client.stats()) == 3
        gone = cluster.servers[2]
        gone.close()
        await gone.wait_closed()
        await wait_state(client, gone.port, HostState.DOWN)
        layout = {"servers": [entry for entry in cluster.layout()["servers"]
                              if entry["pool"] != 2]}
        for server in cluster.servers[:2]:
            server.set_topology(layout, cluster.name_of(server))
        topology = await client.refresh_topology()
        assert topology.num_pools == 2
        assert sorted(s.port for s in client.stats()) == sorted(cluster.hostlist([0, 1])[i][1]
                                                                for i in range(2))
        # a server of the user's hostlist is kept even when down and not listed
        cluster.servers[1].close()
        await cluster.servers[1].wait_closed()
        for server in cluster.servers[:1]:
            server.set_topology({"servers": layout["servers"][:1]},
                                cluster.name_of(server))
        await client.refresh_topology()
        assert len(client.stats()) == 2


async def test_pool_error_asks_for_an_early_refresh() -> None:
    from tsconnector.protocol import AnswerType, RequestType
    from tsconnector.testing.fake import Request, ScriptedServer

    refused = 0

    async def handler(request: Request) -> Any:
        nonlocal refused
        if request.tp == RequestType.QUERY:
            query = request.data[0]
            if query.startswith("list servers"):
                return AnswerType.RES_QUERY, {
                    "columns": ["name", "address", "port", "pool", "online", "status"],
                    "servers": [["127.0.0.1:1", "127.0.0.1", 1, 0, True, "running"]]}
            if query == "show server":
                return AnswerType.RES_QUERY, {"data": [{"name": "server",
                                                        "value": "127.0.0.1:1"}]}
        if request.tp == RequestType.INSERT and refused == 0:
            refused += 1
            return AnswerType.ERR_POOL, {"error_msg": "At least one pool has no server"}
        return None

    async with ScriptedServer(handler) as server, client_for(
        [("127.0.0.1", server.port)], discover_interval=600
    ) as client:
        watcher = client._watcher
        assert watcher is not None
        refreshes = watcher.refreshes
        refreshed = watcher.next_refresh()
        await client.insert({"a": [[1, 1]]})  # PoolError once, then stored
        assert refused == 1
        await asyncio.wait_for(refreshed, 5)
        assert watcher.refreshes == refreshes + 1


async def test_siridb_forwarding_error_makes_a_part_unknown() -> None:
    """SiriDB answers InsertError "Error occurred while sending points to at least ..."
    after storing its own pool's points: such a part's outcome is unknown."""
    from tsconnector.protocol import AnswerType, RequestType
    from tsconnector.protocol.lookup import pool_of
    from tsconnector.testing.fake import Request, ScriptedServer

    names = ["127.0.0.1:1", "127.0.0.1:2"]

    def handler_for(index: int) -> Any:
        async def handler(request: Request) -> Any:
            if request.tp == RequestType.QUERY and request.data[0].startswith("list servers"):
                return AnswerType.RES_QUERY, {
                    "columns": ["name", "address", "port", "pool", "online", "status"],
                    "servers": [[n, "127.0.0.1", i + 1, i, True, "running"]
                                for i, n in enumerate(names)]}
            if request.tp == RequestType.QUERY and request.data[0] == "show server":
                return AnswerType.RES_QUERY, {"data": [{"name": "server",
                                                        "value": names[index]}]}
            if request.tp == RequestType.INSERT and index == 1:
                return AnswerType.ERR_INSERT, {
                    "error_msg": "Error occurred while sending points to at least "
                                 "'127.0.0.1:3'"}
            return None
        return handler

    async with ScriptedServer(handler_for(0)) as first, ScriptedServer(handler_for(1)) as second:
        async with client_for([("127.0.0.1", first.port), ("127.0.0.1", second.port)]) as client:
            data = batch(NAMES[:10])
            with pytest.raises(InsertPartlyApplied) as caught:
                await client.insert(data)
    error = caught.value
    assert set(error.unknown) == {n for n in NAMES[:10] if pool_of(n, 2) == 1}
    assert set(error.applied) == {n for n in NAMES[:10] if pool_of(n, 2) == 0}
    assert error.not_applied is None
    assert isinstance(error.errors[0], InsertError)
