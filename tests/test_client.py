"""TsClient: connect results, argument checks, retries, insert outcome, close, stats, events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from shared_helpers import wait_until

from tsconnector.client import TsClient
from tsconnector.events import HostEvent, HostState
from tsconnector.exceptions import (
    AuthenticationError,
    ClientClosedError,
    InsertError,
    InsertOutcomeUnknown,
    PoolError,
    QueryError,
    ServerError,
    TsConnectionError,
    TsTimeoutError,
)
from tsconnector.protocol import AnswerType, RequestType
from tsconnector.testing.fake import NO_ANSWER, Request, ScriptedServer

FAST = {"initial_retry_wait": 0.05, "max_wait_retry": 0.2, "timeout": 2, "pool_retry_wait": 0.05}


def make_client(*ports: int, **options: Any) -> TsClient:
    opts = {**FAST, **options}
    return TsClient("iris", "siri", "dbtest", [("127.0.0.1", p) for p in ports], **opts)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    async with ScriptedServer() as srv:
        yield srv


# ---------------------------------------------------------------- construct


def test_constructible_outside_a_loop() -> None:
    client = TsClient("iris", "siri", "dbtest", [("127.0.0.1", 9000)])
    assert not client.connected
    assert not client.is_closed
    client.close()
    assert client.is_closed


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        (("h1", 9000, {"weight": 0}), "h1:9000"),
        (("h2", 9000, {"weight": 10}), "h2:9000"),
        (("h3", 9000, {"weight": "3"}), "h3:9000"),
        (("h4", 9000, {"color": "red"}), "h4:9000"),
        (("h5", 9000, {"backup": "yes"}), "h5:9000"),
    ],
)
def test_bad_host_options_raise_value_error(entry: tuple[Any, ...], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        TsClient("iris", "siri", "dbtest", [entry])


async def test_connect_returns_per_host_results(server: ScriptedServer) -> None:
    async with ScriptedServer() as other:
        port = other.port
    client = make_client(server.port, port)
    results = await client.connect()
    assert results[0] is None
    assert isinstance(results[1], OSError | TsConnectionError)
    assert client.connected
    assert await client.query("show version") == {"echo": "show version"}
    client.close()
    await client.wait_closed()


async def test_context_manager_raises_on_bad_credentials(server: ScriptedServer) -> None:
    client = TsClient("iris", "nope", "dbtest", [("127.0.0.1", server.port)], **FAST)
    with pytest.raises(AuthenticationError):
        async with client:
            pass
    assert client.is_closed


async def test_async_with_and_query(server: ScriptedServer) -> None:
    async with make_client(server.port) as client:
        assert client.connected
        assert await client.query(b"list series") == {"echo": "list series"}
        assert await client.insert({"a": [[1, 2]]}) == {
            "success_msg": "Successfully inserted 1 point(s)."
        }
    assert client.is_closed
    assert not client.connected


# ------------------------------------------------------------ argument checks


async def test_query_argument_checks(server: ScriptedServer) -> None:
    async with make_client(server.port) as client:
        with pytest.raises(ValueError, match="time_precision"):
            await client.query("select * from 'x'", 4)
        with pytest.raises(TypeError, match="time_precision"):
            await client.query("select * from 'x'", "ms")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.query(42)  # type: ignore[arg-type]
        await client.query("q", 3)
        assert server.requests[-1].data == ["q", 3]


async def test_insert_checks_before_sending(server: ScriptedServer) -> None:
    async with make_client(server.port) as client:
        sent = server.counts.get(RequestType.INSERT, 0)
        with pytest.raises(OverflowError):
            await client.insert({"x": [[1699920000, 18446744073709551616]]})
        with pytest.raises(OverflowError):
            await client.insert({"x": [[1 << 63, 1]]})
        with pytest.raises(TypeError):
            await client.insert({"x": [[1699920000, object()]]})
        with pytest.raises(ValueError, match="retry"):
            await client.insert({"x": [[1, 1]]}, retry="sometimes")  # type: ignore[arg-type]
        assert server.counts.get(RequestType.INSERT, 0) == sent


async def test_server_errors_are_raised_not_retried() -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY:
            return (AnswerType.ERR_QUERY, {"error_msg": "Syntax error"})
        if req.tp == RequestType.INSERT:
            return (AnswerType.ERR_INSERT, {"error_msg": "Expecting an array with points."})
        return None

    async with ScriptedServer(handler) as srv, make_client(srv.port) as client:
        with pytest.raises(QueryError, match="Syntax error"):
            await client.query("bad")
        with pytest.raises(InsertError, match="Expecting an array"):
            await client.insert({"x": [[1, 2]]})
        assert srv.counts[RequestType.QUERY] == 1
        assert srv.counts[RequestType.INSERT] == 1


# ------------------------------------------------------------------ retries


async def test_query_moves_to_another_host_after_server_error() -> None:
    async def failing(req: Request) -> Any:
        if req.tp == RequestType.QUERY:
            return (AnswerType.ERR_SERVER, {"error_msg": "Server is paused"})
        return None

    async with ScriptedServer(failing) as bad, ScriptedServer() as good:
        async with make_client(bad.port, good.port, inactive_time=30) as client:
            for _ in range(20):
                assert await client.query("q") == {"echo": "q"}
            assert bad.counts.get(RequestType.QUERY, 0) == 1  # then inactive
            states = {s.port: s.state for s in client.stats()}
            assert states[bad.port] is HostState.INACTIVE
            assert states[good.port] is HostState.READY


async def test_inactive_host_is_tried_once_when_nothing_else_is_ready() -> None:
    failed_once = False

    async def handler(req: Request) -> Any:
        nonlocal failed_once
        if req.tp == RequestType.QUERY and not failed_once:
            failed_once = True
            return (AnswerType.ERR_SERVER, {"error_msg": "paused"})
        return None

    async with ScriptedServer(handler) as srv, make_client(srv.port, inactive_time=30) as client:
        # the failing call does not retry on the now-inactive host: it ends at once
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ServerError, match=r"^paused$"):
            await client.query("first", timeout=30)
        assert loop.time() - start < 5
        assert client.stats()[0].state is HostState.INACTIVE
        # a new call tries the connected but inactive host once (an insert answered
        # ServerError was not applied, so inserts may too)
        assert await client.query("second") == {"echo": "second"}
        await client.insert({"s": [[1, 1]]}, timeout=2)
        assert srv.counts.get(RequestType.INSERT, 0) == 1


async def test_inactive_host_comes_back_after_inactive_time() -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY and req.data[0] == "paused":
            return (AnswerType.ERR_SERVER, {"error_msg": "paused"})
        return None

    async with ScriptedServer(handler) as srv, make_client(srv.port, inactive_time=0.2) as client:
        back = asyncio.Event()
        client.on_host_event(lambda e: back.set() if e.new is HostState.READY else None)
        with pytest.raises(ServerError):
            await client.query("paused", timeout=3)
        assert client.stats()[0].state is HostState.INACTIVE
        await asyncio.wait_for(back.wait(), 5)
        assert client.stats()[0].state is HostState.READY
        assert await client.query("q", timeout=3) == {"echo": "q"}


async def test_query_waits_and_retries_after_pool_error() -> None:
    calls = 0

    async def handler(req: Request) -> Any:
        nonlocal calls
        if req.tp == RequestType.QUERY:
            calls += 1
            if calls < 3:
                return (AnswerType.ERR_POOL, {"error_msg": "No online server for pool 1"})
        return None

    async with ScriptedServer(handler) as srv, make_client(srv.port) as client:
        assert await client.query("q") == {"echo": "q"}
        assert calls == 3
        calls = -1000
        with pytest.raises(PoolError):
            await client.query("q", timeout=0.2)


async def test_insert_outcome_unknown_after_written() -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.INSERT:
            req.close()
            return NO_ANSWER
        return None

    async with ScriptedServer(handler) as srv, make_client(srv.port) as client:
        data = {"s": [[1, 1]]}
        with pytest.raises(InsertOutcomeUnknown) as info:
            await client.insert(data)
        assert info.value.payload is data
        assert isinstance(info.value, ConnectionError)
        assert srv.counts[RequestType.INSERT] == 1


async def test_insert_retry_always_is_at_least_once() -> None:
    def drop_first_insert() -> Any:
        dropped = False

        async def handler(req: Request) -> Any:
            nonlocal dropped
            if req.tp == RequestType.INSERT and not dropped:
                dropped = True
                req.close()
                return NO_ANSWER
            return None

        return handler

    async with ScriptedServer(drop_first_insert()) as a, ScriptedServer(drop_first_insert()) as b:
        async with make_client(a.port, b.port) as client:
            result = await client.insert({"s": [[1, 1]]}, retry="always")
            assert result["success_msg"] == "Successfully inserted 1 point(s)."
            stored = a.series.get("s", []) + b.series.get("s", [])
            assert stored == [[1, 1]]
            assert a.counts[RequestType.INSERT] + b.counts[RequestType.INSERT] >= 2


async def test_insert_retried_after_server_error() -> None:
    async def paused(req: Request) -> Any:
        if req.tp == RequestType.INSERT:
            return (AnswerType.ERR_SERVER, {"error_msg": "paused"})
        return None

    async with ScriptedServer(paused) as bad, ScriptedServer() as good:
        async with make_client(bad.port, good.port) as client:
            for i in range(10):
                await client.insert({"s": [[i, i]]})
            assert len(good.series["s"]) == 10
            assert bad.counts.get(RequestType.INSERT, 0) <= 1


async def test_timeout_is_one_deadline_across_retries() -> None:
    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY:
            return (AnswerType.ERR_POOL, {"error_msg": "pool"})
        return None

    async with ScriptedServer(handler) as srv, make_client(srv.port) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(PoolError):
            await client.query("q", timeout=0.3)
        assert 0.25 <= loop.time() - start < 1.5


async def test_query_timeout_raises_timeout_error() -> None:
    async def silent(req: Request) -> Any:
        return NO_ANSWER if req.tp == RequestType.QUERY else None

    async with ScriptedServer(silent) as srv, make_client(srv.port) as client:
        with pytest.raises(TsTimeoutError):
            await client.query("q", timeout=0.1)
        assert client.connected
        [stats] = client.stats()
        assert stats.failures == 1
        assert stats.last_error is not None
        assert "timed out" in stats.last_error


async def test_cancelled_query_leaves_connection_usable() -> None:
    release = asyncio.Event()

    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY and req.data[0] == "slow":
            await release.wait()
        return None

    async with ScriptedServer(handler) as srv, make_client(srv.port) as client:
        task = asyncio.ensure_future(client.query("slow"))
        await wait_until(lambda: srv.counts.get(RequestType.QUERY, 0) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        for i in range(5):
            assert await client.query(f"q{i}") == {"echo": f"q{i}"}


async def test_no_task_per_request_for_1000_concurrent_queries(server: ScriptedServer) -> None:
    async with make_client(server.port) as client:
        await asyncio.sleep(0)
        baseline = len(asyncio.all_tasks())
        peak = 0

        async def one(i: int) -> Any:
            nonlocal peak
            peak = max(peak, len(asyncio.all_tasks()))
            return await client.query(f"q{i}")

        results = await asyncio.gather(*(one(i) for i in range(1000)))
        assert results[500] == {"echo": "q500"}
        # gather makes one task per coroutine; the client adds none of its own
        assert peak <= baseline + 1000


# ---------------------------------------------------------------- closing


async def test_close_waits_for_requests_in_flight() -> None:
    release = asyncio.Event()

    async def handler(req: Request) -> Any:
        if req.tp == RequestType.QUERY:
            await release.wait()
        return None

    async with ScriptedServer(handler) as srv:
        client = make_client(srv.port, close_timeout=5)
        await client.connect()
        tasks = [asyncio.ensure_future(client.query(f"q{i}")) for i in range(3)]
        await wait_until(lambda: srv.counts.get(RequestType.QUERY, 0) == 3)
        client.close()
        with pytest.raises(ClientClosedError):
            await client.query("late")
        release.set()
        await client.wait_closed()
        assert [t.result() for t in tasks] == [{"echo": f"q{i}"} for i in range(3)]
        assert not client.connected


async def test_close_aborts_after_bound() -> None:
    async def silent(req: Request) -> Any:
        return NO_ANSWER if req.tp == RequestType.QUERY else None

    async with ScriptedServer(silent) as srv:
        client = make_client(srv.port, close_timeout=0.1)
        await client.connect()
        task = asyncio.ensure_future(client.query("q"))
        await wait_until(lambda: srv.counts.get(RequestType.QUERY, 0) == 1)
        client.close()
        await asyncio.wait_for(client.wait_closed(), 2)
        with pytest.raises(ClientClosedError):
            await task


# ------------------------------------------------------------ stats, events


async def test_stats_and_events(server: ScriptedServer) -> None:
    seen: list[HostEvent] = []
    client = make_client(server.port)
    unsubscribe = client.on_host_event(seen.append)
    stream_events: list[HostEvent] = []
    stream = client.host_events()  # subscribed from here on, before any iteration

    async def consume() -> None:
        async for event in stream:
            stream_events.append(event)

    await client.connect()
    consumer = asyncio.ensure_future(consume())
    await client.query("q")
    [stats] = client.stats()
    assert stats.state is HostState.READY
    assert stats.requests == 1
    assert stats.last_latency is not None
    assert stats.last_latency >= 0
    assert [(e.old, e.new) for e in seen] == [
        (HostState.DOWN, HostState.CONNECTING),
        (HostState.CONNECTING, HostState.READY),
    ]
    server.drop_all()
    await wait_until(lambda: client.stats()[0].reconnects == 1)
    assert HostState.DOWN in [e.new for e in seen[2:]]
    unsubscribe()
    client.close()
    await client.wait_closed()
    await asyncio.wait_for(consumer, 2)
    assert stream_events[:2] == seen[:2]
    assert stream_events[-1].new is HostState.CLOSED


async def test_large_and_numpy_inserts_arrive_intact(server: ScriptedServer) -> None:
    np = pytest.importorskip("numpy")
    async with make_client(server.port) as client:
        points = [[1_600_000_000 + i, i * 0.5] for i in range(100_000)]
        await client.insert({"big": points})
        assert server.series["big"] == points
        ts = np.arange(1_600_000_000, 1_600_000_000 + 1000, dtype=np.int64)
        values = np.arange(1000, dtype=np.float64)
        await client.insert({"arr": (ts, values)})
        assert server.series["arr"] == [[int(t), float(v)] for t, v in zip(ts, values)]


async def test_params_and_arrays_through_the_embedded_server() -> None:
    """``params`` fill placeholders safely (datetime in db units); ``as_arrays`` decodes."""
    import datetime as dt

    import numpy as np

    from tsconnector import TsClient
    from tsconnector.server import EmbeddedServer

    name = 'odd "name" / with \\ slash'
    async with EmbeddedServer(port=0, databases=(("dbms", "ms"),)) as server:
        async with TsClient("iris", "siri", "dbms", [(server.host, server.port)]) as client:
            assert await client.db_time_precision() == 1
            await client.insert({name: [[1_700_000_000_000, 1.5], [1_700_000_001_000, 2.5]]})
            start = dt.datetime(2023, 11, 14, 22, 13, 20, 500_000, tzinfo=dt.timezone.utc)
            answer = await client.query("select * from $1 after $2", params=[name, start])
            assert answer == {name: [[1_700_000_001_000, 2.5]]}
            arrays = await client.query("select * from $1", params=[name], as_arrays=True)
            ts, values = arrays[name]
            assert ts.tolist() == [1_700_000_000_000, 1_700_000_001_000]
            assert values.dtype == np.float64
            assert values.tolist() == [1.5, 2.5]


async def test_insert_numpy_datetime64_uses_the_database_precision() -> None:
    import numpy as np

    from tsconnector import TsClient
    from tsconnector.server import EmbeddedServer

    stamps = np.array(["2023-11-14T00:00:00.250", "2023-11-14T00:00:01"], dtype="datetime64[ms]")
    async with EmbeddedServer(port=0, databases=(("dbms", "ms"),)) as server:
        async with TsClient("iris", "siri", "dbms", [(server.host, server.port)]) as client:
            await client.insert({"dt": (stamps, np.array([1.0, 2.0]))})
            answer = await client.query('select * from "dt"')
    assert answer == {"dt": [[1_699_920_000_250, 1.0], [1_699_920_001_000, 2.0]]}


async def test_large_insert_streams_while_small_requests_keep_their_answers() -> None:
    """A multi-megabyte insert is written in chunks; requests sent meanwhile queue behind it."""
    import numpy as np

    from tsconnector import TsClient
    from tsconnector.server import EmbeddedServer

    n = 400_000  # about 7 MB on the wire, well above the streaming threshold
    ts = np.arange(1_600_000_000, 1_600_000_000 + n, dtype=np.int64)
    async with EmbeddedServer(port=0) as server:
        async with TsClient("iris", "siri", "dbtest", [(server.host, server.port)]) as client:
            await client.insert({"small": [[1, 1]]})
            big = asyncio.ensure_future(
                client.insert({"big": (ts, np.arange(n, dtype=np.float64))})
            )
            await asyncio.sleep(0)  # let the insert start writing
            small = await asyncio.gather(
                *(client.query('select count() from "small"') for _ in range(20))
            )
            assert all(answer == {"small": [[1, 1]]} for answer in small)
            assert (await big)["success_msg"] == f"Successfully inserted {n} point(s)."
            lists = {"lists": [[int(t), 1.5] for t in ts[:100_000]]}  # unframed bytes path
            assert (await client.insert(lists))["success_msg"].endswith("100000 point(s).")
            count = await client.query('select count() from "big", "lists"')
    assert count == {"big": [[1_600_000_000 + n - 1, n]], "lists": [[1_600_099_999, 100_000]]}
