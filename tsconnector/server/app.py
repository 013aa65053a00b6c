"""The embedded server: databases (optionally durable in a data directory) behind a socket.

``async with EmbeddedServer(port=0) as srv:`` starts it on an ephemeral port
(``srv.port``); ``close()`` plus ``await wait_closed()`` stop it, flushing the journals.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..protocol import MAX_FRAME_SIZE, PRECISION_NAMES
from .dbconf import read_database_conf
from .expiration import DEFAULT_OPTIMIZE_INTERVAL, ExpirationTask
from .handler import ClientProtocol
from .model import ACCESS_PROFILES, DEFAULT_BUFFER_SIZE, Database, User
from .service import ServiceAccounts
from .state import ServerState
from .storage import DEFAULT_SNAPSHOT_BYTES, DEFAULT_SNAPSHOT_INTERVAL, Store, read_meta

log = logging.getLogger(__name__)

_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


#: A database to serve: ``(name, precision)`` or ``(name, precision, options)`` where the
#: options are ``buffer_size`` (bytes), ``duration_num`` and ``duration_log`` (seconds,
#: or durations such as ``"1w"``), as SiriDB's ``new-database`` takes them.
DatabaseSpec = tuple[str, str | int] | tuple[str, str | int, dict[str, Any]]

_DURATION_UNITS = {"h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | int) -> int:
    """Seconds of a database duration (``6h``, ``2d``, ``1w``: 1 to 99 of a unit)."""
    if isinstance(value, int):
        return value
    amount, unit = value[:-1], value[-1:]
    if unit not in _DURATION_UNITS or not amount.isdigit() or not 1 <= int(amount) <= 99:
        raise ValueError(f"invalid duration {value!r} (valid examples: 6h, 2d or 1w)")
    return int(amount) * _DURATION_UNITS[unit]


def parse_precision(value: str | int) -> int:
    """``"s"``/``"ms"``/``"us"``/``"ns"`` (or 0-3) as the wire precision code."""
    if isinstance(value, int) and 0 <= value <= 3:
        return value
    if isinstance(value, str) and value in PRECISION_NAMES:
        return PRECISION_NAMES.index(value)
    raise ValueError(f"invalid time precision {value!r} (expected s, ms, us or ns)")


class EmbeddedServer:
    """A SiriDB-protocol server in this process, for development and tests."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        data_dir: str | Path | None = None,
        databases: Iterable[DatabaseSpec] = (("dbtest", "s"),),
        users: Iterable[tuple[str, str]] = (("iris", "siri"),),
        service_accounts: Iterable[tuple[str, str]] = (("sa", "siri"),),
        max_frame_size: int = MAX_FRAME_SIZE,
        server_port: int = 9010,
        snapshot_bytes: int = DEFAULT_SNAPSHOT_BYTES,
        snapshot_interval: float = DEFAULT_SNAPSHOT_INTERVAL,
        optimize_interval: float = DEFAULT_OPTIMIZE_INTERVAL,
    ) -> None:
        self._bind_host = host
        self._bind_port = port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._db_specs = [
            (spec[0], parse_precision(spec[1]), dict(spec[2]) if len(spec) > 2 else {})
            for spec in databases
        ]
        self._optimize_interval = optimize_interval
        self._expiration: ExpirationTask | None = None
        self._users: Sequence[tuple[str, str]] = list(users)
        self._snapshot_bytes = snapshot_bytes
        self._snapshot_interval = snapshot_interval
        host_name = socket.gethostname() if host in _WILDCARD_HOSTS else host
        self.state = ServerState(
            host_name=host_name,
            server_port=server_port,
            max_frame_size=max_frame_size,
            accounts=ServiceAccounts(dict(service_accounts)),
        )
        self._server: asyncio.base_events.Server | None = None
        self._closed: asyncio.Event | None = None
        self._closing_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Load the databases (recovering them from ``data_dir``) and start listening."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._closed = asyncio.Event()
        loop = asyncio.get_running_loop()
        for name, precision, options in self._db_specs:
            await self._open_database(name, precision, options)
        self._server = await loop.create_server(
            lambda: ClientProtocol(self.state), self._bind_host, self._bind_port
        )
        self._expiration = ExpirationTask(
            self.state.databases,
            self._sync_database,
            optimize_interval=self._optimize_interval,
            paused=lambda: self.state.control.backup_mode,
        )
        self._expiration.start()

    async def _sync_database(self, db: Database) -> None:
        store = self.state.stores.get(db.name)
        if store is not None and store.pending:
            await store.sync()

    async def _open_database(
        self, name: str, precision: int, options: dict[str, Any] | None = None
    ) -> None:
        directory = self.data_dir / name if self.data_dir is not None else None
        if directory is not None:
            meta = read_meta(directory)
            if meta is not None and meta.get("precision") in (0, 1, 2, 3):
                if meta["precision"] != precision:
                    log.warning(
                        "database %s keeps its stored precision %s",
                        name, PRECISION_NAMES[meta["precision"]],
                    )
                precision = meta["precision"]
        options = options or {}
        factor = (1, 1000, 1000_000, 1000_000_000)[precision]
        db = Database(
            name,
            precision,
            buffer_size=int(options.get("buffer_size", DEFAULT_BUFFER_SIZE)),
            duration_num=parse_duration(options.get("duration_num", 604800)) * factor,
            duration_log=parse_duration(options.get("duration_log", 86400)) * factor,
        )
        for user_name, password in self._users:
            db.users[user_name] = User(user_name, password, ACCESS_PROFILES["full"])
        if directory is not None:
            store = Store(
                directory,
                db,
                snapshot_bytes=self._snapshot_bytes,
                snapshot_interval=self._snapshot_interval,
            )
            await asyncio.get_running_loop().run_in_executor(None, store.open)
            self.state.stores[name] = store
            db.dbpath = str(directory.resolve()) + "/"
            conf = read_database_conf(directory)
            db.buffer_path = conf.buffer_path
            if conf.buffer_size is not None:
                db.resize_buffer(conf.buffer_size)
                if store.pending:
                    await store.sync()
        self.state.databases[name] = db

    def close(self) -> None:
        """Stop accepting connections and close the open ones (see :meth:`wait_closed`)."""
        if self._closing_task is not None or self._server is None:
            return
        self._server.close()
        for conn in list(self.state.connections):
            conn.close()
        self._closing_task = asyncio.get_running_loop().create_task(self._finish_close())

    async def _finish_close(self) -> None:
        try:
            assert self._server is not None
            await self._server.wait_closed()
            if self._expiration is not None:
                await self._expiration.stop()
            for forwarder in self.state.tees.values():
                forwarder.close()
            for store in list(self.state.stores.values()):
                try:
                    await store.close()
                except Exception:
                    log.exception("closing the store of %s failed", store.db.name)
        finally:
            assert self._closed is not None
            self._closed.set()

    async def wait_closed(self) -> None:
        """Wait until the listener is closed and every journal is flushed."""
        if self._closing_task is None:
            return
        await asyncio.shield(self._closing_task)

    async def __aenter__(self) -> EmbeddedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        await self.wait_closed()

    # -- introspection and test hooks ----------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._bind_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        return self._bind_host

    @property
    def address(self) -> tuple[str, int]:
        return self._bind_host, self.port

    @property
    def databases(self) -> dict[str, Database]:
        return self.state.databases

    def database(self, name: str) -> Database:
        return self.state.databases[name]

    @property
    def connection_count(self) -> int:
        return len(self.state.connections)

    def kill_connections(self) -> int:
        """Abort every client connection at once; returns how many were open."""
        conns = list(self.state.connections)
        for conn in conns:
            conn.abort()
        return len(conns)
