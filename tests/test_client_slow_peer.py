"""A server that stops reading: the client applies backpressure and still closes in time.

On Python 3.12.0-3.12.8 and 3.13.0-3.13.1 asyncio's ``writelines`` never pauses the
protocol (gh-127655); the client must hold its own writes back on every version, and
``close()``/``wait_closed()`` must end within a bound whatever the server does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tsconnector.client import TsClient
from tsconnector.connection import Connection, open_connection
from tsconnector.protocol import HEADER_SIZE, AnswerType, FrameDecoder, RequestType, encode_frame

AUTH = ("iris", "siri", "dbtest")
PAYLOAD = 256 * 1024


class DeafServer:
    """Authenticates every connection, then never reads from it again (nor answers)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.release = asyncio.Event()

    async def __aenter__(self) -> DeafServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release.set()
        for writer in self.writers:
            writer.transport.abort()
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        # shrink the receive buffer so the client's socket buffers fill quickly
        decoder = FrameDecoder()
        while True:
            data = await reader.read(HEADER_SIZE + 64)
            if not data:
                return
            frames = decoder.feed(data)
            if frames:
                pid, tp, _ = frames[0]
                if tp == RequestType.AUTH:
                    writer.write(encode_frame(pid, AnswerType.RES_AUTH_SUCCESS))
                    break
        await self.release.wait()  # never read again


@pytest.fixture
async def deaf() -> AsyncIterator[DeafServer]:
    async with DeafServer() as server:
        yield server


async def wait_paused(conn: Connection, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not conn.writing_paused:
        assert loop.time() < deadline, "the connection never applied backpressure"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("transport_pauses", [True, False], ids=["pausing", "gh-127655"])
async def test_writes_are_held_back_when_the_server_stops_reading(
    deaf: DeafServer, transport_pauses: bool
) -> None:
    conn = await open_connection("127.0.0.1", deaf.port, *AUTH, timeout=5)
    transport = conn._transport
    assert transport is not None
    if not transport_pauses:  # what asyncio's writelines does on 3.12.1 and 3.13.0
        if not hasattr(transport, "_maybe_pause_protocol"):
            pytest.skip("not asyncio's selector transport")
        transport._maybe_pause_protocol = lambda: None  # type: ignore[attr-defined]
    payload = b"\x00" * PAYLOAD
    calls = [
        asyncio.ensure_future(conn.request(RequestType.INSERT, payload, timeout=60))
        for _ in range(200)  # 50 MiB in all
    ]
    await wait_paused(conn)
    for _ in range(20):  # let every waiting writer run: they must stay held back
        await asyncio.sleep(0)
    buffered = transport.get_write_buffer_size()
    high = transport.get_write_buffer_limits()[1]
    assert buffered <= high + 2 * (PAYLOAD + HEADER_SIZE), buffered
    assert conn.in_flight < 100  # most requests wait before writing anything
    conn.abort()
    for call in calls:
        with pytest.raises(ConnectionError):
            await call


async def test_close_ends_in_time_when_the_server_stops_reading(deaf: DeafServer) -> None:
    conn = await open_connection("127.0.0.1", deaf.port, *AUTH, timeout=5, close_timeout=0.3)
    for _ in range(100):
        conn.send(RequestType.INSERT, b"\x00" * PAYLOAD, asyncio.get_running_loop().time() + 60)
    conn.close()
    await asyncio.wait_for(conn.wait_closed(), 10)
    assert not conn.connected


async def test_client_close_ends_in_time_when_the_server_stops_reading(deaf: DeafServer) -> None:
    client = TsClient("iris", "siri", "dbtest", [("127.0.0.1", deaf.port)], close_timeout=0.3)
    await client.connect()
    calls = [asyncio.ensure_future(client.insert({"s": [[i, 0.5]] * 20_000}, timeout=60))
             for i in range(20)]
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    client.close()
    await asyncio.wait_for(client.wait_closed(), 10)
    assert loop.time() - start < 5
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes), outcomes
