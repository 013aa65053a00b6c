"""Errors a user can act on: prompt, typed, with the server's text or the host's reason.

Each test reproduces a call that used to end in ``PoolError: No available connections
found`` after the whole deadline, a reconnect loop, or a confusing message.
"""

from __future__ import annotations

import asyncio
import builtins
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tsconnector.client import TsClient
from tsconnector.events import HostEvent, HostState
from tsconnector.exceptions import AnswerTooLarge, PoolError, ServerError
from tsconnector.protocol import AnswerType, RequestType
from tsconnector.results import to_dataframe
from tsconnector.testing.fake import Request, ScriptedServer

FAST: dict[str, Any] = {"initial_retry_wait": 0.05, "max_wait_retry": 0.2, "timeout": 2,
                        "pool_retry_wait": 0.05}
BACKUP_MODE = "Server is in backup mode and cannot process this request."


def make_client(*ports: int, **options: Any) -> TsClient:
    return TsClient("iris", "siri", "dbtest", [("127.0.0.1", p) for p in ports],
                    **{**FAST, **options})


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def backup_mode(req: Request) -> Any:
    if req.tp in (RequestType.QUERY, RequestType.INSERT):
        return (AnswerType.ERR_SERVER, {"error_msg": BACKUP_MODE})
    return None


@pytest.mark.parametrize("hosts", [1, 3])
async def test_server_error_on_every_host_ends_the_call_with_the_servers_text(hosts: int) -> None:
    servers = [await ScriptedServer(backup_mode).start() for _ in range(hosts)]
    try:
        async with make_client(*(s.port for s in servers), inactive_time=30) as client:
            loop = asyncio.get_running_loop()
            for call in (client.query("select * from x", timeout=30),
                         client.insert({"x": [[1, 1.5]]}, timeout=30)):
                start = loop.time()
                with pytest.raises(ServerError) as info:
                    await call
                assert loop.time() - start < 5  # not the 30 s deadline
                assert str(info.value) == BACKUP_MODE
            # every host was asked once per call, none twice
            assert [s.counts.get(RequestType.QUERY) for s in servers] == [1] * hosts
            assert [s.counts.get(RequestType.INSERT) for s in servers] == [1] * hosts
    finally:
        for server in servers:
            await server.close()


async def test_refused_hosts_are_reported_at_once_by_later_calls() -> None:
    dead = unused_port()
    client = make_client(dead, timeout=1)
    results = await client.connect()
    assert isinstance(results[0], ConnectionRefusedError)
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        with pytest.raises(PoolError, match=f"connection refused to 127.0.0.1:{dead}"):
            await client.query("show version", timeout=30)
        assert loop.time() - start < 5
        assert client.stats()[0].last_error == f"connection refused to 127.0.0.1:{dead}"
    finally:
        client.close()
        await client.wait_closed()


async def test_a_dropped_connection_is_still_waited_for_within_the_deadline() -> None:
    """Failing fast must not give up on a host whose reconnect attempt is still due."""
    async with ScriptedServer() as server:
        async with make_client(server.port, initial_retry_wait=0.2) as client:
            down = asyncio.Event()
            client.on_host_event(lambda e: down.set() if e.new is HostState.DOWN else None)
            server.drop_all()
            await asyncio.wait_for(down.wait(), 5)
            assert await client.query("back", timeout=10) == {"echo": "back"}


async def test_host_going_down_carries_its_error() -> None:
    events: list[HostEvent] = []
    async with ScriptedServer() as server:
        port = server.port
        async with make_client(port) as client:
            down = asyncio.Event()

            def record(event: HostEvent) -> None:
                events.append(event)
                if event.new is HostState.DOWN:
                    down.set()

            client.on_host_event(record)
            server.drop_all()  # the server closes: no exception on the client's side
            await asyncio.wait_for(down.wait(), 5)
    (event,) = [e for e in events if e.old is HostState.READY and e.new is HostState.DOWN]
    assert event.error is not None
    assert f"127.0.0.1:{port}" in str(event.error)


def test_hostlist_given_as_a_string_says_so() -> None:
    with pytest.raises(TypeError, match=r"not a string .*\[\('127.0.0.1', 9000\)\]"):
        TsClient("iris", "siri", "dbtest", "127.0.0.1:9000")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got one tuple"):
        TsClient("iris", "siri", "dbtest", ("127.0.0.1", 9000))  # type: ignore[arg-type]


async def test_points_that_are_not_pairs_are_refused_with_a_clear_message() -> None:
    async with ScriptedServer() as server, make_client(server.port) as client:
        for data in ({"a": [1, 2, 3]}, {"a": [[1, 2], [3, 4, 5]]}, [{"name": "a", "points": [7]}]):
            with pytest.raises(TypeError, match=r"series 'a': points must be \[timestamp, value\]"):
                await client.insert(data)
        assert server.counts.get(RequestType.INSERT, 0) == 0


async def test_answer_over_the_frame_limit_is_one_clear_error_without_reconnects(
    embedded_server_factory: Callable[..., Awaitable[Any]],
) -> None:
    server = await embedded_server_factory()
    limit = 64 * 1024
    async with TsClient("iris", "siri", "dbtest", [("127.0.0.1", server.port)],
                        max_frame_size=limit) as client:
        for start in range(0, 20_000, 2_000):
            await client.insert({"big": [[t, t * 0.5] for t in range(start, start + 2_000)]})
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AnswerTooLarge, match="max_frame_size=") as info:
            await client.query('select * from "big"', timeout=60)
        assert loop.time() - started < 10
        assert info.value.limit == limit
        assert info.value.size > limit
        stats = client.stats()[0]
        assert (stats.reconnects, stats.state) == (0, HostState.READY)
        assert stats.requests == 11  # 10 inserts and the one query: not retried
        count = await client.query('select count() from "big"')
        assert count["big"][0][1] == 20_000


def test_pandas_paths_name_the_extra_when_pandas_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pandas", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"pip install 'tsconnector\[pandas\]'"):
        to_dataframe({"s": [[1, 2.0]]})
