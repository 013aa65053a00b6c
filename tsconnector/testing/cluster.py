"""EmbeddedCluster: several embedded servers that list one multi-pool SiriDB topology.

``async with EmbeddedCluster(pools=3) as cluster:`` starts one embedded server per pool
(``replicas=2`` for two per pool) on ephemeral ports and gives them one layout, so a
cluster-aware client (``TsClient(..., discover=True)``) routes to them as to a real
cluster. Each server is named ``127.0.0.1:<client port + 10>`` (SiriDB's default
distance between client and back-end port). A test double: every server stores what it
receives and forwards nothing; ``cluster.arrivals()`` tells what reached which server.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ..protocol.lookup import pool_of
from ..server import EmbeddedServer
from ..server.cluster import Arrivals, ClusterTopology

__all__ = ["EmbeddedCluster"]

#: Back-end port minus client port in the servers' names (SiriDB: 9010 - 9000).
NAME_PORT_OFFSET = 10


class EmbeddedCluster:
    """``pools`` pools of ``replicas`` embedded servers each, on ephemeral ports."""

    def __init__(self, pools: int = 3, replicas: int = 1, **server_options: Any) -> None:
        if pools < 1 or replicas not in (1, 2):
            raise ValueError("a cluster has at least one pool of one or two servers")
        self.num_pools = pools
        self.replicas = replicas
        self._options = server_options
        self.servers: list[EmbeddedServer] = []
        #: The pool of each server, in ``servers`` order.
        self.pools: list[int] = []

    async def start(self) -> EmbeddedCluster:
        """Start every server, then give all of them the layout."""
        try:
            for pool in range(self.num_pools):
                for _ in range(self.replicas):
                    server = EmbeddedServer(port=0, **self._options)
                    await server.start()
                    self.servers.append(server)
                    self.pools.append(pool)
            layout = self.layout()
            for server in self.servers:
                server.set_topology(layout, self.name_of(server))
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Stop every server."""
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()

    async def __aenter__(self) -> EmbeddedCluster:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -------------------------------------------------------------------- layout

    @staticmethod
    def name_of(server: EmbeddedServer) -> str:
        """The SiriDB name of ``server`` in the layout."""
        return f"127.0.0.1:{server.port + NAME_PORT_OFFSET}"

    def layout(self) -> dict[str, Any]:
        """The JSON form of the cluster's topology (what ``--topology FILE`` reads)."""
        return {"servers": [
            {"name": self.name_of(server), "pool": pool}
            for server, pool in zip(self.servers, self.pools)
        ]}

    def hostlist(self, indexes: Sequence[int] | None = None) -> list[tuple[str, int]]:
        """``(host, port)`` of the servers (all, or those at ``indexes``)."""
        chosen = range(len(self.servers)) if indexes is None else indexes
        return [("127.0.0.1", self.servers[i].port) for i in chosen]

    def pool_of(self, series: str | bytes) -> int:
        """The pool that owns ``series`` (SiriDB's lookup)."""
        return pool_of(series, self.num_pools)

    def pool_servers(self, pool: int) -> list[EmbeddedServer]:
        """The servers of ``pool``."""
        return [s for s, p in zip(self.servers, self.pools) if p == pool]

    def set_status(self, server: EmbeddedServer, status: str) -> None:
        """Every server lists ``server`` with ``status`` from now on."""
        name = self.name_of(server)
        for each in self.servers:
            self._topology(each).set_status(name, status)

    def set_online(self, server: EmbeddedServer, online: bool) -> None:
        """Every server lists ``server`` as online or offline from now on."""
        name = self.name_of(server)
        for each in self.servers:
            self._topology(each).set_online(name, online)

    @staticmethod
    def _topology(server: EmbeddedServer) -> ClusterTopology:
        topology = server.topology
        assert topology is not None
        return topology

    # ----------------------------------------------------------------- arrivals

    def arrivals(self) -> list[Arrivals]:
        """What reached each server, in ``servers`` order."""
        found = []
        for server in self.servers:
            arrivals = server.arrivals
            assert arrivals is not None
            found.append(arrivals)
        return found

    def reset_arrivals(self) -> None:
        """Count from zero on every server."""
        for arrivals in self.arrivals():
            arrivals.reset()

    def stored(self, series: str, db: str = "dbtest") -> list[int]:
        """How many points of ``series`` each server stores, in ``servers`` order."""
        counts = []
        for server in self.servers:
            found = server.database(db).series.get(series)
            counts.append(0 if found is None else len(found.ts))
        return counts
