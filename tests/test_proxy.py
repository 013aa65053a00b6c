"""FaultProxy: forwarding and each injected fault, seen through a real Connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tsconnector.client import TsClient
from tsconnector.connection import Connection, open_connection
from tsconnector.exceptions import TsConnectionError, TsTimeoutError
from tsconnector.protocol import RequestType, pack
from tsconnector.testing import FaultProxy
from tsconnector.testing.fake import ScriptedServer


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[ScriptedServer, FaultProxy]]:
    async with ScriptedServer() as server, FaultProxy("127.0.0.1", server.port) as proxy:
        yield server, proxy


async def connect(proxy: FaultProxy, **options: Any) -> Connection:
    return await open_connection(
        "127.0.0.1", proxy.port, "iris", "siri", "dbtest", timeout=2, **options
    )


async def ask(conn: Connection, text: str, timeout: float = 2.0) -> Any:
    return await conn.request(RequestType.QUERY, pack([text, None]), timeout=timeout)


async def test_forwards_both_ways(proxied: tuple[ScriptedServer, FaultProxy]) -> None:
    server, proxy = proxied
    conn = await connect(proxy)
    assert await ask(conn, "hello") == {"echo": "hello"}
    assert proxy.connections == 1
    assert server.connections == 1
    assert proxy.address == ("127.0.0.1", proxy.port)
    conn.close()
    await conn.wait_closed()


async def test_drop_all(proxied: tuple[ScriptedServer, FaultProxy]) -> None:
    _server, proxy = proxied
    conn = await connect(proxy)
    assert proxy.drop_all() == 1
    await asyncio.wait_for(conn.wait_closed(), 2)
    assert not conn.connected
    conn2 = await connect(proxy)  # new connections still work
    assert await ask(conn2, "again") == {"echo": "again"}
    conn2.close()


async def test_stall_keeps_socket_open_and_resume_delivers(
    proxied: tuple[ScriptedServer, FaultProxy],
) -> None:
    _server, proxy = proxied
    conn = await connect(proxy)
    proxy.stall()
    with pytest.raises(TsTimeoutError):
        await ask(conn, "held", timeout=0.1)
    assert conn.connected  # half-open: nothing flows, nothing closes
    fresh = await connect(proxy)  # stall() leaves new connections alone
    assert await ask(fresh, "fresh") == {"echo": "fresh"}
    proxy.resume()
    assert await ask(conn, "flowing") == {"echo": "flowing"}
    conn.close()
    fresh.close()


async def test_stall_new_connections(proxied: tuple[ScriptedServer, FaultProxy]) -> None:
    _server, proxy = proxied
    proxy.stall(new_connections=True)
    with pytest.raises(TsTimeoutError):
        await open_connection("127.0.0.1", proxy.port, "iris", "siri", "dbtest", timeout=0.2)
    proxy.resume()
    conn = await connect(proxy)
    assert await ask(conn, "ok") == {"echo": "ok"}
    conn.close()


async def test_delay(proxied: tuple[ScriptedServer, FaultProxy]) -> None:
    _server, proxy = proxied
    conn = await connect(proxy)
    proxy.set_delay(0.1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await ask(conn, "slow") == {"echo": "slow"}
    assert loop.time() - start >= 0.2  # delayed on the way in and on the way out
    proxy.set_delay(0)
    conn.close()


async def test_cut_mid_frame(proxied: tuple[ScriptedServer, FaultProxy]) -> None:
    _server, proxy = proxied
    conn = await connect(proxy)
    proxy.cut_mid_frame(keep=5)
    with pytest.raises(TsConnectionError):
        await ask(conn, "cut")
    assert not conn.connected
    assert conn._decoder.buffered == 5  # the answer's header was cut after 5 bytes


async def test_refuse_new_and_kill(proxied: tuple[ScriptedServer, FaultProxy]) -> None:
    _server, proxy = proxied
    conn = await connect(proxy)
    proxy.refuse_new()
    with pytest.raises((ConnectionError, OSError, TsTimeoutError)):
        await open_connection("127.0.0.1", proxy.port, "iris", "siri", "dbtest", timeout=1)
    assert proxy.refused == 1
    assert await ask(conn, "still") == {"echo": "still"}  # existing ones untouched
    assert proxy.kill() == 1
    await asyncio.wait_for(conn.wait_closed(), 2)
    proxy.revive()
    conn2 = await connect(proxy)
    assert await ask(conn2, "back") == {"echo": "back"}
    conn2.close()


async def test_plugin_fixtures(embedded_server: Any, tsclient: TsClient, fault_proxy: Any) -> None:
    assert tsclient.connected
    await tsclient.insert({"p": [[1699920000, 1]]})
    assert await tsclient.query('select * from "p"') == {"p": [[1699920000, 1]]}
    proxy = await fault_proxy(embedded_server.port)
    async with TsClient("iris", "siri", "dbtest", [proxy.address]) as client:
        assert await client.query("count series") == {"series": 1}
