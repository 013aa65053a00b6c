"""What every connection of one embedded server shares: databases, stores, accounts,
limits, the internal-error record and the rate-limited log."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..protocol import MAX_FRAME_SIZE
from .control import ServerControl
from .internal import InternalErrors
from .limits import DEFAULT_LIMITS, ServerLimits
from .model import Database, User
from .ratelog import RateLimitedLog
from .service import ServiceAccounts
from .tee import TeeForwarder

if TYPE_CHECKING:
    from .cluster import Arrivals, ClusterTopology
    from .handler import ClientProtocol
    from .storage import Store

#: The SiriDB version the embedded server reports.
VERSION = "2.0.55"


def _default_execute() -> Callable[[Any, str, int | None], tuple[int, Any]]:
    from .query.evaluator import run  # what ``query.execute`` calls, without its import

    return run


@dataclass
class ServerState:
    """Shared server state; handlers read it, the app owns it."""

    host_name: str = "127.0.0.1"
    server_port: int = 9010
    max_frame_size: int = MAX_FRAME_SIZE
    version: str = VERSION
    databases: dict[str, Database] = field(default_factory=dict)
    stores: dict[str, Store] = field(default_factory=dict)
    accounts: ServiceAccounts = field(default_factory=ServiceAccounts)
    connections: set[ClientProtocol] = field(default_factory=set)
    started_at: float = field(default_factory=time.time)
    salt: str = field(default_factory=lambda: secrets.token_hex(4))
    execute: Callable[[Any, str, int | None], tuple[int, Any]] = field(
        default_factory=_default_execute
    )
    control: ServerControl = field(default_factory=ServerControl)
    tees: dict[str, TeeForwarder] = field(default_factory=dict)
    limits: ServerLimits = DEFAULT_LIMITS
    rate_log: RateLimitedLog = field(
        default_factory=lambda: RateLimitedLog(logging.getLogger("tsconnector.server"))
    )
    internal: InternalErrors = field(default_factory=InternalErrors)
    #: Called by a connection when it is gone (the app resumes accepting).
    on_connection_lost: Callable[[], None] = lambda: None
    #: The cluster this server pretends to be part of (None: a one-pool cluster) and the
    #: counts of what arrived here.
    topology: ClusterTopology | None = None
    arrivals: Arrivals | None = None

    @property
    def server_name(self) -> str:
        """``host:port`` as SiriDB names its server (the back-end port, 9010)."""
        return f"{self.host_name}:{self.server_port}"

    def database_names(self) -> list[str]:
        return list(self.databases)

    def active_handles(self) -> int:
        """Open handles as ``show active_handles`` reports: clients plus the listener."""
        return len(self.connections) + 1

    def new_session(self, db: Database, user: User | str) -> Any:
        """A query session for an authenticated connection (it keeps using ``user``,
        as SiriDB does, even after the user is renamed or dropped)."""
        from .query import Session

        account = user if isinstance(user, User) else None
        return Session(
            db=db,
            user=user.name if isinstance(user, User) else user,
            server_name=self.server_name,
            version=self.version,
            started_at=self.started_at,
            active_handles=self.active_handles,
            account=account,
            control=self.control,
            topology=self.current_topology,
        )

    def forward_insert(self, db: Database, payload: Callable[[], bytes]) -> None:
        """Copy a valid insert to the database's tee (if it has one); see :mod:`.tee`."""
        forwarder = self.tees.get(db.name)
        if db.tee is None and forwarder is None:
            return
        if forwarder is None:
            forwarder = self.tees[db.name] = TeeForwarder(
                on_error=lambda error: setattr(db, "tee_error", error))
        forwarder.configure(db.tee, db.tee_epoch)
        forwarder.forward(payload())

    def current_topology(self) -> ClusterTopology | None:
        """The cluster layout in force now (it can be replaced while serving)."""
        return self.topology
