"""Testing your own code with tsconnector's pytest plugin.

    pip install tsconnector pytest pytest-asyncio
    pytest examples/test_with_plugin.py

Installing tsconnector registers the fixtures ``embedded_server``,
``embedded_server_factory``, ``tsclient`` and ``fault_proxy`` (no import, no conftest).
Written for pytest-asyncio's default *strict* mode: async tests carry
``@pytest.mark.asyncio``; with ``asyncio_mode = "auto"`` the marks may go.
"""

from __future__ import annotations

from typing import Any

import pytest

from tsconnector import TsClient


async def record_reading(client: TsClient, sensor: str, ts: int, value: float) -> None:
    """The code under test: store one reading."""
    await client.insert({f"sensor.{sensor}": [[ts, value]]})


@pytest.mark.asyncio
async def test_a_reading_is_stored(tsclient: TsClient) -> None:
    await record_reading(tsclient, "a", 1_700_000_000, 21.5)
    answer = await tsclient.query('select * from "sensor.a"')
    assert answer == {"sensor.a": [[1_700_000_000, 21.5]]}


@pytest.mark.asyncio
async def test_a_database_in_milliseconds(embedded_server_factory: Any) -> None:
    server = await embedded_server_factory(databases=[("metrics", "ms")])
    async with TsClient("iris", "siri", "metrics", [("127.0.0.1", server.port)]) as client:
        answer = await client.query("show time_precision")
    assert answer["data"][0]["value"] == "ms"


@pytest.mark.asyncio
async def test_queries_survive_a_dropped_connection(
    embedded_server: Any, fault_proxy: Any
) -> None:
    proxy = await fault_proxy(embedded_server.port)
    hosts = [proxy.address]
    async with TsClient("iris", "siri", "dbtest", hosts, initial_retry_wait=0.05) as client:
        await record_reading(client, "b", 1_700_000_000, 1.0)
        assert proxy.drop_all() == 1  # the network cuts the connection
        answer = await client.query('select count() from "sensor.b"', timeout=30)
    assert answer["sensor.b"][0][1] == 1
