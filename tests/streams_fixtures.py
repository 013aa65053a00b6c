"""Fixtures of the streams tests: an embedded server, a client and a catalog per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from catalog_backends import Backend, open_backend

from tsconnector import TsClient
from tsconnector.server import EmbeddedServer
from tsconnector.streams import StreamDB

#: The catalog backends the streams tests run on.
STREAM_BACKENDS = ["sqlite-memory", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[EmbeddedServer]:
    """An embedded server with a ms database and a ns one."""
    async with EmbeddedServer(port=0, databases=[("dbms", "ms"), ("dbns", "ns")]) as srv:
        yield srv


@pytest_asyncio.fixture
async def client(server: EmbeddedServer) -> AsyncIterator[TsClient]:
    """A client of the ms database."""
    async with TsClient("iris", "siri", "dbms", [("127.0.0.1", server.port)]) as c:
        yield c


@pytest_asyncio.fixture(params=STREAM_BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A catalog backend (SQLite in memory, PostgreSQL in a schema of its own)."""
    async with open_backend(request.param, tmp_path) as b:
        yield b


@pytest_asyncio.fixture
async def sdb(client: TsClient, backend: Backend) -> AsyncIterator[StreamDB]:
    """A StreamDB on the ms database and the backend's catalog."""
    async with StreamDB(client, backend.new_db()) as db:
        yield db
