"""pytest plugin: fixtures for an embedded server, a connected client and fault proxies.

Registered through the ``pytest11`` entry point ``tsconnector``, so a project that
installs tsconnector (no extra needed) gets ``embedded_server``,
``embedded_server_factory``, ``tsclient`` and ``fault_proxy``. They are async fixtures
of ``pytest-asyncio`` and work in its strict mode (the default: mark async tests with
``@pytest.mark.asyncio``) and in auto mode. Without pytest-asyncio the same names
exist but fail with a message saying to install it; nothing else changes, so
installing tsconnector never breaks an unrelated test suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from .proxy import FaultProxy

try:
    import pytest_asyncio

    HAVE_PYTEST_ASYNCIO = True
except ImportError:
    HAVE_PYTEST_ASYNCIO = False

#: Credentials of the embedded server's default user and database.
DEFAULT_USER = "iris"
DEFAULT_PASSWORD = "siri"
DEFAULT_DB = "dbtest"

ServerFactory = Callable[..., Awaitable[Any]]
ProxyFactory = Callable[..., Awaitable[FaultProxy]]

NEEDS_PYTEST_ASYNCIO = (
    "the tsconnector fixtures are async and need pytest-asyncio: pip install pytest-asyncio"
)


def _needs_pytest_asyncio(name: str) -> Any:
    """A fixture called ``name`` that fails saying pytest-asyncio is missing."""

    def fixture() -> Any:
        pytest.fail(NEEDS_PYTEST_ASYNCIO, pytrace=False)

    fixture.__doc__ = "Needs pytest-asyncio (fails with a message saying so)."
    return pytest.fixture(name=name)(fixture)


if not HAVE_PYTEST_ASYNCIO:
    for _name in ("embedded_server_factory", "embedded_server", "tsclient", "fault_proxy"):
        globals()[f"_{_name}_without_pytest_asyncio"] = _needs_pytest_asyncio(_name)

else:

    @pytest_asyncio.fixture
    async def embedded_server_factory() -> AsyncIterator[ServerFactory]:
        """Start embedded servers on demand: ``srv = await embedded_server_factory(**kw)``.

        Keyword arguments go to ``EmbeddedServer`` (``port=0`` and loopback by default);
        every server is stopped at teardown.
        """
        from ..server import EmbeddedServer

        started: list[Any] = []

        async def start(**kwargs: Any) -> Any:
            kwargs.setdefault("host", "127.0.0.1")
            kwargs.setdefault("port", 0)
            server = EmbeddedServer(**kwargs)
            await server.__aenter__()
            started.append(server)
            return server

        try:
            yield start
        finally:
            for server in reversed(started):
                await server.__aexit__(None, None, None)

    @pytest_asyncio.fixture
    async def embedded_server(embedded_server_factory: ServerFactory) -> Any:
        """A running in-memory EmbeddedServer on 127.0.0.1 and a free port (``.port``)."""
        return await embedded_server_factory()

    @pytest_asyncio.fixture
    async def tsclient(embedded_server: Any) -> AsyncIterator[Any]:
        """A TsClient connected to ``embedded_server`` as iris/siri on ``dbtest``."""
        from ..client import TsClient

        client = TsClient(
            DEFAULT_USER, DEFAULT_PASSWORD, DEFAULT_DB, [("127.0.0.1", embedded_server.port)]
        )
        await client.connect()
        try:
            yield client
        finally:
            client.close()
            await client.wait_closed()

    @pytest_asyncio.fixture
    async def fault_proxy() -> AsyncIterator[ProxyFactory]:
        """Start FaultProxy instances: ``proxy = await fault_proxy(port, host="127.0.0.1")``.

        Every proxy is closed at teardown.
        """
        proxies: list[FaultProxy] = []

        async def start(target_port: int, target_host: str = "127.0.0.1") -> FaultProxy:
            proxy = await FaultProxy(target_host, target_port).start()
            proxies.append(proxy)
            return proxy

        try:
            yield start
        finally:
            for proxy in proxies:
                await proxy.close()
