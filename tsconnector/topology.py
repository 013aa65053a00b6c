"""A SiriDB cluster's layout as the client sees it: servers, pools, status flags.

Built from three answers (no I/O here): ``list servers`` with local columns (the
coordinator's view: every server, offline ones too), ``list servers`` with
``active_handles`` (each online server answering for itself; a remote column, so offline
servers are missing) and ``list pools``. A server is *fit* to be chosen when it is
online and its status is exactly ``running``; ``re-indexing``, ``synchronizing``,
``backup-mode``, ``queue-full``, ``unavailable`` and ``offline`` make it unfit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ProtocolError
from .protocol.lookup import lookup_table, pool_of

__all__ = [
    "LOAD_QUERY",
    "POOLS_QUERY",
    "SERVERS_QUERY",
    "STATUS_WORDS",
    "UNFIT_STATUS",
    "ClusterServer",
    "Topology",
    "parse_status",
    "parse_topology",
]

#: The coordinator's view of every server (local columns: offline servers included).
SERVERS_QUERY = "list servers name, address, port, pool, online, status"
#: Each online server's own status and load (``active_handles`` is a remote column).
LOAD_QUERY = "list servers name, address, port, pool, online, status, active_handles"
#: Pools with their number of servers and series (pools without an online server are
#: missing).
POOLS_QUERY = "list pools pool, servers, series"

#: SiriDB's server status words in the order it prints them joined with ``" | "``
#: (``offline`` stands alone, for a server that is not online). The embedded server
#: validates a topology's statuses against these too.
STATUS_WORDS: tuple[str, ...] = (
    "running", "synchronizing", "re-indexing", "backup-mode", "queue-full", "unavailable",
)

#: Status words that keep a server from being chosen while a fit one can serve.
UNFIT_STATUS = frozenset(STATUS_WORDS[1:]) | {"offline"}


def parse_status(text: str) -> frozenset[str]:
    """``"running | re-indexing"`` as ``{"running", "re-indexing"}``."""
    return frozenset(word.strip() for word in text.split("|") if word.strip())


@dataclass(frozen=True)
class ClusterServer:
    """One server of the cluster: ``name`` is SiriDB's ``address:port`` (the back-end
    port, not the client port)."""

    name: str
    address: str
    port: int
    pool: int
    online: bool
    status: frozenset[str]
    active_handles: int | None = None

    @property
    def fit(self) -> bool:
        """Online and exactly running: a server to choose while one exists."""
        return self.online and "running" in self.status and not self.status & UNFIT_STATUS

    @property
    def status_text(self) -> str:
        """The status as SiriDB prints it."""
        words = [w for w in STATUS_WORDS if w in self.status]
        words += sorted(self.status - set(STATUS_WORDS) - {"offline"})
        return " | ".join(words) if words else "offline"


@dataclass(frozen=True)
class Topology:
    """A snapshot of the cluster: its servers, its number of pools and whether it is
    re-indexing (then the client does not route by pool: the server's lookup is in flux).
    """

    servers: tuple[ClusterServer, ...]
    num_pools: int
    #: Series per pool, from ``list pools`` (pools without an online server missing).
    pool_series: Mapping[int, int] = field(default_factory=dict)
    #: ``loop.time()`` when the snapshot was taken.
    time: float = 0.0

    @property
    def reindexing(self) -> bool:
        """True while any server reports ``re-indexing``."""
        return any("re-indexing" in s.status for s in self.servers)

    @property
    def routable(self) -> bool:
        """True when inserts can be split per pool: several pools, no re-indexing."""
        return self.num_pools > 1 and not self.reindexing

    def server(self, name: str) -> ClusterServer | None:
        """The server called ``name``, if listed."""
        for server in self.servers:
            if server.name == name:
                return server
        return None

    def pool_servers(self, pool: int) -> list[ClusterServer]:
        """The servers of ``pool``."""
        return [s for s in self.servers if s.pool == pool]

    def pool_of(self, name: str | bytes, signed_char: bool = True) -> int:
        """The pool that owns series ``name`` (SiriDB's lookup)."""
        return pool_of(name, lookup_table(self.num_pools), signed_char)


def parse_topology(
    servers_answer: Any,
    load_answer: Any = None,
    pools_answer: Any = None,
    *,
    time: float = 0.0,
) -> Topology:
    """Combine the answers of :data:`SERVERS_QUERY`, :data:`LOAD_QUERY` and
    :data:`POOLS_QUERY` (the last two may be None) into a :class:`Topology`.

    A server's status is the union of the coordinator's view and its own (queue-full
    is only ever seen by others, re-indexing first by the server itself). Raises
    :class:`~tsconnector.exceptions.ProtocolError` for a servers answer of an unexpected
    shape; the other two only add detail and are ignored then.
    """
    rows = _rows(servers_answer, "servers", SERVERS_QUERY)
    own: dict[str, dict[str, Any]] = {}
    for row in _optional_rows(load_answer, "servers", LOAD_QUERY):
        own[str(row.get("name"))] = row
    servers = []
    for row in rows:
        try:
            name = str(row["name"])
            status = parse_status(str(row["status"]))
            load = own.get(name)
            if load is not None:
                status |= parse_status(str(load.get("status", "")))
                handles = load.get("active_handles")
            else:
                handles = None
            servers.append(ClusterServer(
                name=name,
                address=str(row["address"]),
                port=_integer(row["port"]),
                pool=_integer(row["pool"]),
                online=row["online"] is True,
                status=status,
                active_handles=handles if isinstance(handles, int) else None,
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"unexpected row in the answer to {SERVERS_QUERY!r}: {row!r}"
                                ) from exc
    if not servers:
        raise ProtocolError(f"the answer to {SERVERS_QUERY!r} lists no server")
    pool_series: dict[int, int] = {}
    for row in _optional_rows(pools_answer, "pools", POOLS_QUERY):
        pool, series = row.get("pool"), row.get("series")
        if isinstance(pool, int) and isinstance(series, int):
            pool_series[pool] = series
    num_pools = max(s.pool for s in servers) + 1
    return Topology(tuple(servers), num_pools, pool_series, time)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a non-negative integer: {value!r}")
    return value


def _optional_rows(answer: Any, key: str, query: str) -> list[dict[str, Any]]:
    if answer is None:
        return []
    try:
        return _rows(answer, key, query)
    except ProtocolError:
        return []


def _rows(answer: Any, key: str, query: str) -> list[dict[str, Any]]:
    """The rows of a ``list`` answer as dicts keyed by column."""
    if not isinstance(answer, Mapping):
        raise ProtocolError(f"unexpected answer to {query!r}: {answer!r}")
    columns = answer.get("columns")
    rows = answer.get(key)
    if not isinstance(columns, Sequence) or not isinstance(rows, Sequence):
        raise ProtocolError(f"unexpected answer to {query!r}: {answer!r}")
    out = []
    for row in rows:
        if not isinstance(row, Sequence) or len(row) != len(columns):
            raise ProtocolError(f"unexpected row in the answer to {query!r}: {row!r}")
        out.append(dict(zip(columns, row)))
    return out
