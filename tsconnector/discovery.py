"""Topology discovery: learn a SiriDB cluster's servers and pools and keep them current.

A :class:`TopologyWatcher` asks one ready host for the cluster's layout (see
:mod:`tsconnector.topology`), learns which server each connection reaches (``show
server``: a server's SiriDB name carries its back-end port, not the client port), adds
servers missing from the hostlist, and marks every host with its pool and whether its
status lets it be chosen. It refreshes on connect, every ``interval`` seconds and, at
most once a second, after errors that hint at a change (a PoolError, a ServerError, a
host lost or back).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

from .connection import Connection
from .events import HostEvent, HostState
from .exceptions import ProtocolError, TsConnectorError
from .pool import Host, HostPool
from .protocol import RequestType, pack
from .protocol.lookup import lookup_table, pool_of
from .routing import RoutingStats, split_by_pool
from .topology import (
    LOAD_QUERY,
    POOLS_QUERY,
    SERVERS_QUERY,
    ClusterServer,
    Topology,
    parse_topology,
)

__all__ = ["DEFAULT_PORT_OFFSET", "AddressMap", "TopologyWatcher"]

log = logging.getLogger("tsconnector.discovery")

#: SiriDB's default client port (9000) minus its default back-end port (9010).
DEFAULT_PORT_OFFSET = -10
#: Early refreshes (after errors) are at least this many seconds apart.
MIN_REFRESH_GAP = 1.0
#: Series names whose pool is remembered (cleared when full or when the table changes).
OWNER_CACHE_SIZE = 1 << 16

#: ``(address, back-end port) -> (host, client port)`` for a server not in the hostlist;
#: None skips the server.
AddressMap = Callable[[str, int], "tuple[str, int] | None"]


class TopologyWatcher:
    """Keeps a :class:`~tsconnector.topology.Topology` of the cluster behind a pool."""

    def __init__(
        self,
        pool: HostPool,
        *,
        interval: float = 60.0,
        query_timeout: float = 10.0,
        address_map: AddressMap | None = None,
        signed_char: bool = True,
    ) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.interval = interval
        self.query_timeout = query_timeout
        self._address_map = address_map
        self.signed_char = signed_char
        self.topology: Topology | None = None
        self.stats = RoutingStats()
        self.last_error: BaseException | None = None
        self._table: tuple[int, ...] | None = None
        self._owners: dict[Any, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._due = asyncio.Event()
        self._refreshing: asyncio.Future[Topology] | None = None
        self._last_refresh = -float("inf")
        self._added: list[Host] = []
        self._waiters: list[asyncio.Future[Topology]] = []
        #: Successful refreshes so far.
        self.refreshes = 0
        self._unsubscribe = pool.events.subscribe(self._on_host_event)
        pool.tiered = True

    # ------------------------------------------------------------------ routing

    def plan(self, data: Any) -> dict[int, Any] | None:
        """``{pool: part}`` for an insert, or None to send it whole to any server
        (topology unknown, one pool, re-indexing, or data that cannot be split)."""
        if self._table is None:
            return None
        return split_by_pool(data, self._owner)

    def _owner(self, name: Any) -> int:
        """The pool of series ``name``, remembered (writers send the same names again)."""
        owners = self._owners
        pool = owners.get(name)
        if pool is None:
            table = self._table
            assert table is not None
            pool = pool_of(name, table, self.signed_char)
            if len(owners) >= OWNER_CACHE_SIZE:
                owners.clear()
            owners[name] = pool
        return pool

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Refresh every ``interval`` seconds (and early when poked) in the background."""
        if self._task is None and not self._pool.closing:
            self._task = self._pool.spawn(self._run(), "topology discovery")

    def close(self) -> None:
        """Stop refreshing (the pool's close cancels the task too)."""
        self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def poke(self) -> None:
        """Ask for an early refresh (rate-limited to one a second)."""
        self._due.set()

    def _on_host_event(self, event: HostEvent) -> None:
        if event.new is HostState.READY or (
            event.old is HostState.READY and event.new is HostState.DOWN
        ):
            self._due.set()

    async def _run(self) -> None:
        while not self._pool.closing:
            try:
                await asyncio.wait_for(self._due.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            gap = self._last_refresh + min(MIN_REFRESH_GAP, self.interval) - self._loop.time()
            if gap > 0:
                await asyncio.sleep(gap)  # rate limit: at most one refresh per gap
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("topology refresh failed: %s", exc)

    # ------------------------------------------------------------------ refresh

    async def refresh(self) -> Topology:
        """Read the topology now (concurrent callers share one refresh) and apply it.

        Raises the last error when no ready host could answer; the previous topology
        is kept then.
        """
        if self._refreshing is not None:
            return await asyncio.shield(self._refreshing)
        fut: asyncio.Future[Topology] = self._loop.create_future()
        self._refreshing = fut
        try:
            topology = await self._refresh()
        except BaseException as exc:
            self.last_error = exc
            if not fut.cancelled():
                fut.set_exception(exc)
                fut.exception()  # retrieved: concurrent callers re-raise it
            raise
        else:
            fut.set_result(topology)
            self.refreshes += 1
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(topology)
            return topology
        finally:
            self._refreshing = None
            self._last_refresh = self._loop.time()

    def next_refresh(self) -> asyncio.Future[Topology]:
        """A future resolved with the topology of the next successful refresh."""
        waiter: asyncio.Future[Topology] = self._loop.create_future()
        self._waiters.append(waiter)
        return waiter

    async def _refresh(self) -> Topology:
        self._due.clear()  # changes from now on ask for another refresh
        topology = await self._read_topology()
        await self._identify_hosts()
        self._apply(topology)
        self.topology = topology
        self.last_error = None
        table = lookup_table(topology.num_pools) if topology.routable else None
        if table is not self._table:
            self._owners = {}
        self._table = table
        return topology

    async def _read_topology(self) -> Topology:
        """The three listing queries on one ready host; another one if it fails."""
        tried: set[Host] = set()
        error: BaseException | None = None
        while True:
            try:
                host = self._pool.choose(True, exclude=tried)
            except TsConnectorError:
                raise error or ProtocolError("no host to read the topology from") from None
            conn = host.conn
            tried.add(host)
            if conn is None:
                continue
            try:
                servers, load, pools = await asyncio.gather(
                    self._query(conn, SERVERS_QUERY),
                    self._optional(conn, LOAD_QUERY),
                    self._optional(conn, POOLS_QUERY),
                )
                return parse_topology(servers, load, pools, time=self._loop.time())
            except (TsConnectorError, OSError) as exc:
                log.debug("reading the topology from %s failed: %s", host.address, exc)
                error = exc

    async def _query(self, conn: Connection, query: str) -> Any:
        return await conn.request(
            RequestType.QUERY, pack([query, None]), timeout=self.query_timeout
        )

    async def _optional(self, conn: Connection, query: str) -> Any:
        """A query whose answer only adds detail: None when it fails."""
        try:
            return await self._query(conn, query)
        except (TsConnectorError, OSError) as exc:
            log.debug("%r failed: %s", query, exc)
            return None

    async def _identify_hosts(self) -> None:
        """Ask each connection not identified yet which server it reaches."""
        pending = [
            h for h in self._pool.hosts
            if h.conn is not None and h.conn.ready and h.identified_conn is not h.conn
        ]
        if not pending:
            return
        await asyncio.gather(*(self._identify(h) for h in pending))

    async def _identify(self, host: Host) -> None:
        conn = host.conn
        if conn is None:
            return
        try:
            answer = await self._query(conn, "show server")
            name = answer["data"][0]["value"]
        except (TsConnectorError, OSError, LookupError, TypeError) as exc:
            log.debug("cannot learn the server name of %s: %s", host.address, exc)
            return
        if isinstance(name, str) and host.conn is conn:
            host.server_name = name
            host.identified_conn = conn

    # -------------------------------------------------------------------- apply

    def _apply(self, topology: Topology) -> None:
        """Mark every host with its server's pool and fitness; add unknown servers;
        drop discovered hosts the cluster no longer lists."""
        pool = self._pool
        by_name: dict[str, Host] = {}
        for host in pool.hosts:
            if host.server_name is not None:
                by_name.setdefault(host.server_name, host)
        offset = self._port_offset(topology)
        listed = {s.name for s in topology.servers}
        for server in topology.servers:
            found = by_name.get(server.name) or self._host_for(server, offset)
            if found is not None:
                self._mark(found, server)
        for gone in list(pool.hosts):
            if gone.server_name is not None and gone.server_name not in listed:
                gone.fit = False
                gone.status = "not listed"
                if gone.discovered and (gone.conn is None or gone.conn.in_flight == 0):
                    pool.remove_host(gone)

    @staticmethod
    def _mark(host: Host, server: ClusterServer) -> None:
        host.server_name = server.name
        host.cluster_pool = server.pool
        host.status = server.status_text
        host.fit = server.fit

    def _host_for(self, server: ClusterServer, offset: int) -> Host | None:
        """The pool's host for a listed server no connection was identified with."""
        if self._address_map is not None:
            address = self._address_map(server.address, server.port)
        else:
            port = server.port + offset
            address = (server.address, port) if 0 < port < 65536 else None
        if address is None:
            return None
        for host in self._pool.hosts:
            if (host.host, host.port) == address:
                return host  # in the hostlist but not connected (yet)
        if not server.online:
            return None  # nothing to connect to; added when it is back
        host = Host(address[0], address[1])
        host.discovered = True
        host.server_name = server.name
        log.info("adding discovered server %s (pool %d) at %s", server.name, server.pool,
                 host.address)
        self._pool.add_host(host)
        self._added.append(host)
        return host

    async def connect_added(self) -> None:
        """Wait for the first connection attempt of the hosts the last refreshes added
        (each bounded by the pool's connect timeout; failures keep reconnecting)."""
        added, self._added = self._added, []
        tasks = [h.task for h in added if h.task is not None and not h.task.done()]
        if tasks:
            await asyncio.wait(tasks)

    def _port_offset(self, topology: Topology) -> int:
        """Client port minus back-end port, as the identified hosts show it (the most
        common one), or SiriDB's default difference."""
        offsets: collections.Counter[int] = collections.Counter()
        for host in self._pool.hosts:
            server = topology.server(host.server_name) if host.server_name else None
            if server is not None and host.identified_conn is not None:
                offsets[host.port - server.port] += 1
        if not offsets:
            return DEFAULT_PORT_OFFSET
        return offsets.most_common(1)[0][0]
