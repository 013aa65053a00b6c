"""A static cluster layout for the embedded server, and counts of what arrived where.

With a topology (``EmbeddedServer(topology=...)``, ``--topology FILE``) several embedded
servers describe one multi-pool SiriDB cluster: each answers ``list servers``, ``list
pools``, ``count pools`` and ``show pool``/``show status`` from the same layout, so a
cluster-aware client routes to them as to a real cluster. It is a test double: every
server stores what it receives and forwards nothing; :class:`Arrivals` counts which
series reached which server, and how many points a real server would have forwarded.

The layout is JSON: ``{"servers": [{"name": "127.0.0.1:9010", "pool": 0}, ...]}`` with
optional ``"online"`` (true) and ``"status"`` (``"running"``) per server. Names are
``address:port`` (SiriDB's back-end port), pools are numbered 0..n-1 without gaps, and a
pool has one or two servers, as in SiriDB.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol.lookup import lookup_table, pool_of
from ..topology import STATUS_WORDS
from .errors import ServerStartError

__all__ = [
    "REMOTE_SERVER_COLUMNS",
    "Arrivals",
    "ClusterTopology",
    "TopologyError",
    "TopologyServer",
    "load_topology",
]

#: ``list servers`` columns every server answers for itself (SiriDB forwards the query;
#: offline servers are then left out). All others the answering server knows locally.
LOCAL_SERVER_COLUMNS = frozenset({
    "address", "buffer_path", "buffer_size", "dbpath", "ip_support", "libuv", "name",
    "online", "pool", "port", "startup_time", "status", "uuid", "version",
})
REMOTE_SERVER_COLUMNS = frozenset({
    "active_handles", "active_tasks", "fifo_files", "idle_percentage", "idle_time",
    "log_level", "max_open_files", "mem_usage", "open_files", "received_points",
    "reindex_progress", "selected_points", "sync_progress", "uptime",
})


class TopologyError(ServerStartError, ValueError):
    """A topology that is not a valid SiriDB cluster layout (the message says why)."""

    exit_code = 2  # a usage error, like argparse's


@dataclass
class TopologyServer:
    """One server of the layout; ``online`` and ``status`` can be changed at run time."""

    name: str
    pool: int
    online: bool = True
    status: str = "running"

    @property
    def address(self) -> str:
        return self.name.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.name.rpartition(":")[2])

    @property
    def shown_status(self) -> str:
        """The status as listed: ``offline`` while not online."""
        return self.status if self.online else "offline"


class ClusterTopology:
    """Servers and pools of a cluster, and which of them is this server (``own``)."""

    def __init__(self, servers: Iterable[TopologyServer], own: str) -> None:
        self.servers = list(servers)
        _validate(self.servers)
        self.own_name = own
        if self.server(own) is None:
            names = ", ".join(s.name for s in self.servers)
            raise TopologyError(f"the topology does not name this server {own!r} (it names "
                                f"{names}); start it with a matching --host and --server-port")
        self._table = lookup_table(self.num_pools)

    @classmethod
    def from_mapping(cls, layout: Mapping[str, Any], own: str) -> ClusterTopology:
        """A topology from its JSON form (see the module docstring)."""
        if not isinstance(layout, Mapping) or not isinstance(layout.get("servers"), list):
            raise TopologyError('a topology is an object with a list "servers"')
        servers = []
        for entry in layout["servers"]:
            if not isinstance(entry, Mapping):
                raise TopologyError(f"a topology server must be an object, not {entry!r}")
            unknown = set(entry) - {"name", "pool", "online", "status"}
            if unknown:
                raise TopologyError(f"unknown key(s) {sorted(unknown)} in {dict(entry)!r}")
            name, pool = entry.get("name"), entry.get("pool")
            online, status = entry.get("online", True), entry.get("status", "running")
            if not isinstance(name, str):
                raise TopologyError(f"a topology server needs a name, in {dict(entry)!r}")
            if isinstance(pool, bool) or not isinstance(pool, int):
                raise TopologyError(f"server {name!r}: pool must be an integer, not {pool!r}")
            if not isinstance(online, bool):
                raise TopologyError(f"server {name!r}: online must be true or false")
            if not isinstance(status, str):
                raise TopologyError(f"server {name!r}: status must be a string")
            servers.append(TopologyServer(name, pool, online, status))
        return cls(servers, own)

    # -- queries --------------------------------------------------------------------
    @property
    def num_pools(self) -> int:
        return max(s.pool for s in self.servers) + 1

    @property
    def own(self) -> TopologyServer:
        """This server's entry."""
        server = self.server(self.own_name)
        assert server is not None
        return server

    def server(self, name: str) -> TopologyServer | None:
        for server in self.servers:
            if server.name == name:
                return server
        return None

    def pool_of(self, series: str) -> int:
        """The pool that owns ``series`` (SiriDB's lookup, signed ``char``)."""
        return pool_of(series, self._table)

    # -- changes (tests) ------------------------------------------------------------
    def set_status(self, name: str, status: str) -> None:
        """Report ``status`` (e.g. ``"running | re-indexing"``) for server ``name``."""
        self._entry(name).status = status

    def set_online(self, name: str, online: bool) -> None:
        """Report server ``name`` online or offline."""
        self._entry(name).online = online

    def _entry(self, name: str) -> TopologyServer:
        server = self.server(name)
        if server is None:
            raise KeyError(f"no server {name!r} in the topology")
        return server

    # -- answers --------------------------------------------------------------------
    def server_rows(self, own_row: dict[str, Any], remote: bool) -> list[dict[str, Any]]:
        """Rows for ``list servers``: this server's live row, the others from the layout.

        With a ``remote`` column or condition SiriDB asks every online server, so
        offline ones are left out.
        """
        rows = []
        for server in self.servers:
            if server.name == self.own_name:
                rows.append(own_row)
                continue
            if remote and not server.online:
                continue
            row = dict(own_row)
            row.update(
                name=server.name,
                address=server.address,
                port=server.port,
                pool=server.pool,
                online=server.online,
                status=server.shown_status,
                active_handles=1,
                active_tasks=0,
                received_points=0,
                selected_points=0,
                uptime=0,
                mem_usage=0,
                open_files=0,
            )
            rows.append(row)
        return rows

    def pool_rows(self, own_series: int) -> list[dict[str, Any]]:
        """Rows for ``list pools``: pools without an online server are left out (SiriDB
        cannot ask them); only this server's pool knows its number of series."""
        own_pool = self.own.pool
        rows = []
        for pool in range(self.num_pools):
            members = [s for s in self.servers if s.pool == pool]
            if pool != own_pool and not any(s.online for s in members):
                continue
            rows.append({
                "pool": pool,
                "servers": len(members),
                "series": own_series if pool == own_pool else 0,
            })
        return rows


def _validate(servers: list[TopologyServer]) -> None:
    if not servers:
        raise TopologyError("a topology needs at least one server")
    seen: set[str] = set()
    for server in servers:
        address, sep, port = server.name.rpartition(":")
        if not sep or not address or not port.isdigit() or not 0 < int(port) < 65536:
            raise TopologyError(
                f"server name {server.name!r} must be address:port (the back-end port)")
        if server.name in seen:
            raise TopologyError(f"server {server.name!r} is listed twice")
        seen.add(server.name)
        if server.pool < 0:
            raise TopologyError(f"server {server.name!r}: pool must be >= 0")
        words = [w.strip() for w in server.status.split("|")]
        bad = [w for w in words if w not in STATUS_WORDS]
        if bad:
            raise TopologyError(f"server {server.name!r}: unknown status {bad[0]!r} (known: "
                                f"{', '.join(STATUS_WORDS)}, joined with ' | ')")
    sizes = collections.Counter(s.pool for s in servers)
    for pool in range(max(sizes) + 1):
        if sizes[pool] == 0:
            raise TopologyError(f"pool {pool} has no server (pools are numbered 0..n-1)")
        if sizes[pool] > 2:
            raise TopologyError(f"pool {pool} has {sizes[pool]} servers (at most 2)")


def load_topology(source: str | Path | Mapping[str, Any] | ClusterTopology,
                  own: str) -> ClusterTopology:
    """A topology from a JSON file, its parsed form, or as it is; ``own`` names this
    server. Raises :class:`TopologyError` (bad layout) or ``OSError`` (the file)."""
    if isinstance(source, ClusterTopology):
        if source.server(own) is None:
            return ClusterTopology(source.servers, own)  # raises, naming the servers
        source.own_name = own
        return source
    if isinstance(source, Mapping):
        return ClusterTopology.from_mapping(source, own)
    path = Path(source)
    try:
        layout = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TopologyError(f"{path}: not a JSON topology: {exc}") from None
    try:
        return ClusterTopology.from_mapping(layout, own)
    except TopologyError as exc:
        raise TopologyError(f"{path}: {exc}") from None


class Arrivals:
    """What reached this server: insert requests, points and series, and the points a
    real SiriDB server would have forwarded (their series belong to another pool)."""

    def __init__(self, topology: ClusterTopology) -> None:
        self.topology = topology
        #: Insert requests received (refused ones not counted).
        self.requests = 0
        #: Points received.
        self.points = 0
        #: Points received per series name.
        self.series: collections.Counter[str] = collections.Counter()
        #: Points of series another pool owns (SiriDB would forward them).
        self.foreign_points = 0
        #: Insert requests that held at least one such series.
        self.foreign_requests = 0

    def record(self, series: Mapping[str, Sized]) -> None:
        """Count one accepted insert request (points per series name)."""
        topology = self.topology
        own_pool = topology.own.pool
        foreign = 0
        total = 0
        counts = self.series
        for name, points in series.items():
            n = len(points)
            total += n
            counts[name] += n
            if topology.pool_of(name) != own_pool:
                foreign += n
        self.requests += 1
        self.points += total
        self.foreign_points += foreign
        if foreign:
            self.foreign_requests += 1

    def reset(self) -> None:
        """Start counting from zero."""
        self.requests = self.points = self.foreign_points = self.foreign_requests = 0
        self.series.clear()
