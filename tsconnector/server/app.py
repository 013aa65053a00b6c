"""The embedded server: databases (optionally durable in a data directory) behind a socket.

``async with EmbeddedServer(port=0) as srv:`` starts it on an ephemeral port
(``srv.port``); ``close()`` plus ``await wait_closed()`` stop it, flushing the journals.
Closing is bounded: clients get ``close_timeout`` seconds to take their last answers,
then their connections are aborted. With ``data_dir`` one process at a time serves the
directory (a lock), and damaged files stop the start unless ``repair=True``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import EllipsisType
from typing import Any

from ..protocol import MAX_FRAME_SIZE, PRECISION_NAMES
from ..timeutil import parse_precision
from .cluster import Arrivals, ClusterTopology, load_topology
from .datadir import DataDirLock, database_directory, validate_database_name
from .dbconf import read_database_conf
from .expiration import DEFAULT_OPTIMIZE_INTERVAL, ExpirationTask
from .handler import ClientProtocol
from .internal import InternalErrors
from .limits import DEFAULT_LIMITS, ServerLimits, fd_capped_connections
from .listener import Listener, bind_sockets
from .model import ACCESS_PROFILES, DEFAULT_BUFFER_SIZE, Database, User
from .ratelog import RateLimitedLog
from .service import ServiceAccounts
from .state import ServerState
from .storage import DEFAULT_SNAPSHOT_BYTES, DEFAULT_SNAPSHOT_INTERVAL, Store, read_meta

log = logging.getLogger(__name__)

_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}
#: Seconds between two checks of the handshake and idle timeouts, at most.
_MAX_SWEEP = 1.0


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


class EmbeddedServer:
    """A SiriDB-protocol server in this process, for development and tests.

    Limits (see the README's Reliability section): ``max_connections``,
    ``handshake_timeout``, ``idle_timeout`` (None switches a timeout off),
    ``max_unauth_bytes``, ``close_timeout``, or all of them as ``limits``.

    ``topology`` (a JSON file, its parsed form or a
    :class:`~tsconnector.server.cluster.ClusterTopology`) makes it one server of a
    multi-pool cluster as listed to clients; this server is the entry named
    ``host:server_port`` (see :mod:`tsconnector.server.cluster`).
    """

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
        repair: bool = False,
        limits: ServerLimits | None = None,
        max_connections: int | None = None,
        handshake_timeout: float | EllipsisType | None = ...,
        idle_timeout: float | EllipsisType | None = ...,
        max_unauth_bytes: int | None = None,
        close_timeout: float | None = None,
        topology: str | Path | dict[str, Any] | ClusterTopology | None = None,
    ) -> None:
        self._bind_host = host
        self._topology_source = topology
        self._bind_port = port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._db_specs = [
            (
                validate_database_name(spec[0]),
                parse_precision(spec[1]),
                dict(spec[2]) if len(spec) > 2 else {},
            )
            for spec in databases
        ]
        self._optimize_interval = optimize_interval
        self._expiration: ExpirationTask | None = None
        self._users: Sequence[tuple[str, str]] = list(users)
        self._snapshot_bytes = snapshot_bytes
        self._snapshot_interval = snapshot_interval
        self.repair = repair
        self.limits = _limits(
            limits or DEFAULT_LIMITS,
            max_connections=max_connections,
            handshake_timeout=handshake_timeout,
            idle_timeout=idle_timeout,
            max_unauth_bytes=max_unauth_bytes,
            close_timeout=close_timeout,
        )
        host_name = socket.gethostname() if host in _WILDCARD_HOSTS else host
        rate_log = RateLimitedLog(logging.getLogger("tsconnector.server"))
        self.state = ServerState(
            host_name=host_name,
            server_port=server_port,
            max_frame_size=max_frame_size,
            accounts=ServiceAccounts(dict(service_accounts)),
            limits=self.limits,
            rate_log=rate_log,
            internal=InternalErrors(rate_log),
        )
        self.state.on_connection_lost = self._on_connection_lost
        self._max_connections = self.limits.max_connections
        self._port = port
        self._lock: DataDirLock | None = None
        self._listener: Listener | None = None
        self._accepting: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._conn_changed: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None
        self._closing_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Lock ``data_dir``, load the databases (recovering them) and start listening.

        Raises :class:`~tsconnector.server.errors.DataDirLocked` when another server uses
        ``data_dir`` and :class:`~tsconnector.server.errors.DamagedDataError` when a
        file is damaged (without ``repair``); nothing is changed on disk then.
        """
        if self._listener is not None or self._closed is not None:
            raise RuntimeError("server already started")
        self._closed = asyncio.Event()
        self._conn_changed = asyncio.Event()
        try:
            if self._topology_source is not None:
                self.set_topology(self._topology_source)
            if self.data_dir is not None:
                self._lock = DataDirLock(self.data_dir)
                self._lock.acquire()
            for name, precision, options in self._db_specs:
                await self._open_database(name, precision, options)
            sockets = await bind_sockets(self._bind_host, self._bind_port)
        except BaseException:
            await self._close_stores()
            self._release_lock()
            self._closed.set()
            raise
        self._max_connections = fd_capped_connections(self.limits.max_connections)
        if self._max_connections < self.limits.max_connections:
            log.warning(
                "max_connections lowered from %d to %d to fit the file descriptor limit",
                self.limits.max_connections, self._max_connections,
            )
        self._port = int(sockets[0].getsockname()[1])
        self._listener = Listener(sockets, self._accept, self._has_room, self.state.rate_log)
        self._listener.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
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
        directory = database_directory(self.data_dir, name) if self.data_dir is not None else None
        if directory is not None:
            meta = read_meta(directory, repair=self.repair)
            if meta is not None:
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
                repair=self.repair,
                errors=self.state.internal,
                rate_log=self.state.rate_log,
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

    def _has_room(self) -> bool:
        return len(self.state.connections) + len(self._accepting) < self._max_connections

    def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._connect(sock))
        self._accepting.add(task)
        task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[Any]) -> None:
        self._accepting.discard(task)
        self._on_connection_lost()  # room again if the connection could not be set up

    async def _connect(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: ClientProtocol(self.state), sock)
        except Exception as exc:  # e.g. reset before the transport existed
            self.state.rate_log.info("connect", "could not set up a connection: %s", exc)
            sock.close()

    def _on_connection_lost(self) -> None:
        """A connection ended (or never started): wake the closer, accept again."""
        if self._conn_changed is not None:
            self._conn_changed.set()
        if self._listener is not None and self._closing_task is None:
            self._listener.start()

    async def _sweep(self) -> None:
        """Enforce the handshake and idle timeouts (one sweep over all connections)."""
        limits = self.limits
        timeouts = [t for t in (limits.handshake_timeout, limits.idle_timeout) if t]
        tick = min([_MAX_SWEEP, *(t / 4 for t in timeouts)])
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(tick, 0.01))
            now = loop.time()
            for conn in list(self.state.connections):
                try:
                    conn.check_timeouts(now, limits)
                except Exception as exc:
                    self.state.internal.record("checking connection timeouts", exc)

    def close(self) -> None:
        """Stop accepting, close the connections and the journals (see :meth:`wait_closed`)."""
        if self._closing_task is not None or self._closed is None or self._closed.is_set():
            return
        if self._listener is not None:
            self._listener.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._accepting):
            task.cancel()
        for conn in list(self.state.connections):
            conn.close()
        self._closing_task = asyncio.get_running_loop().create_task(self._finish_close())

    async def _finish_close(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._expiration is not None:
                await self._expiration.stop()
            for forwarder in self.state.tees.values():
                forwarder.close()
            deadline = loop.time() + self.limits.close_timeout
            await self._wait_connections(deadline)
            for conn in list(self.state.connections):
                conn.abort()  # did not take its last answers in time
            await self._wait_connections(loop.time() + 1.0)
            await self._close_stores()
        finally:
            self._release_lock()
            assert self._closed is not None
            self._closed.set()

    async def _wait_connections(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        changed = self._conn_changed
        assert changed is not None
        while self.state.connections:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                return

    async def _close_stores(self) -> None:
        for store in list(self.state.stores.values()):
            try:
                await store.close()
            except Exception as exc:
                self.state.internal.record(f"closing the store of {store.db.name}", exc)

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def wait_closed(self) -> None:
        """Wait until every connection is gone and every journal is flushed."""
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
        return self._port

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

    @property
    def max_connections(self) -> int:
        """The connection cap in force (``max_connections``, lowered to fit the process's
        file descriptor limit)."""
        return self._max_connections

    @property
    def internal_errors(self) -> InternalErrors:
        """Internal errors of this server: ``count``, ``recent``, ``add_hook(fn)``."""
        return self.state.internal

    @property
    def repair_report(self) -> list[dict[str, Any]]:
        """What recovery cut off or repaired, per database file (empty when all was intact)."""
        return [entry for store in self.state.stores.values() for entry in store.report]

    @property
    def topology(self) -> ClusterTopology | None:
        """The cluster layout this server lists (None: a one-pool cluster of itself)."""
        return self.state.topology

    @property
    def arrivals(self) -> Arrivals | None:
        """With a topology: what arrived here (requests, points per series, and points
        whose series another pool owns, which SiriDB would have forwarded)."""
        return self.state.arrivals

    @property
    def server_name(self) -> str:
        """This server's SiriDB name, ``host:server_port``."""
        return self.state.server_name

    def set_topology(
        self,
        topology: str | Path | dict[str, Any] | ClusterTopology,
        server_name: str | None = None,
    ) -> ClusterTopology:
        """List ``topology`` from now on (arrival counts start again); ``server_name``
        renames this server first (``address:port``). Raises ``TopologyError``."""
        state = self.state
        if server_name is not None:
            address, _, port = server_name.rpartition(":")
            if not address or not port.isdigit():
                raise ValueError(f"server name {server_name!r} must be address:port")
            state.host_name, state.server_port = address, int(port)
        loaded = load_topology(topology, state.server_name)
        state.topology = loaded
        state.arrivals = Arrivals(loaded)
        return loaded

    def kill_connections(self) -> int:
        """Abort every client connection at once; returns how many were open."""
        conns = list(self.state.connections)
        for conn in conns:
            conn.abort()
        return len(conns)


def _limits(base: ServerLimits, **overrides: Any) -> ServerLimits:
    """``base`` with the keyword limits that were given (``...`` or None: not given;
    a timeout given as None switches it off)."""
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is ...:
            continue
        if value is None and key not in ("handshake_timeout", "idle_timeout"):
            continue
        changes[key] = value
    return dataclasses.replace(base, **changes) if changes else base
