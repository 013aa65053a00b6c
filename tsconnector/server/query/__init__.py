"""The embedded server's query language: parse a SiriDB query and evaluate it.

The network layer builds one :class:`Session` per authenticated connection and calls
:func:`execute` for every query package; the answer is ``(package type, payload)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tsconnector.server.control import ServerControl

if TYPE_CHECKING:
    from tsconnector.server.model import Database, User


def _one() -> int:
    return 1


def _no_topology() -> Any:
    return None


@dataclass
class Session:
    """Per-connection context of a query: database, user and server facts.

    ``account`` is the user the connection authenticated as: like SiriDB, a
    connection keeps using that user (its rights, its current name) even after the
    user was renamed or dropped. Without one, the user is looked up by ``user``.
    """

    db: Database
    user: str
    server_name: str = "127.0.0.1:9010"
    version: str = "2.0.55"
    started_at: float = field(default_factory=time.time)
    active_handles: Callable[[], int] = _one
    now: Callable[[], float] = time.time
    account: User | None = None
    control: ServerControl = field(default_factory=ServerControl)
    #: The cluster layout (``server.cluster.ClusterTopology``) or None: one pool.
    topology: Callable[[], Any] = _no_topology

    def current_user(self) -> User | None:
        """The user the query runs as (None when it no longer exists)."""
        if self.account is not None:
            return self.account
        return self.db.users.get(self.user)

    @property
    def user_name(self) -> str:
        account = self.current_user()
        return account.name if account is not None else self.user


def execute(session: Session, query: str, time_precision: int | None) -> tuple[int, Any]:
    """Run one query; returns ``(AnswerType, payload)``. Never raises for bad input."""
    from tsconnector.server.query.evaluator import run

    return run(session, query, time_precision)


__all__ = ["Session", "execute"]
