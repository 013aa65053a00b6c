"""``Database``: what ``SqliteDB`` and ``PostgresqlDB`` share — opening, sessions,
migrations and the notification API.

A database object can be built outside a running event loop; it opens on ``await db``,
``async with db`` or the first session, which also brings the catalog's own tables to
the current schema version (see :mod:`.migrations`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from .dialects import Dialect
from .driver import DriverConnection
from .errors import NotSupportedError, SessionClosedError
from .migrations import CATALOG_MIGRATIONS, Migration, run_migrations, schema_version
from .names import check_identifier
from .session import Session

#: ``callback(channel, payload)``; may return an awaitable, which is run as a task.
NotifyCallback = Callable[[str, str], Any]


class Listener:
    """A subscription made by :meth:`Database.listen`; ``await listener.close()`` ends it."""

    def __init__(self, channel: str, stop: Callable[[], Awaitable[None]]) -> None:
        self.channel = channel
        self._stop: Callable[[], Awaitable[None]] | None = stop

    @property
    def closed(self) -> bool:
        return self._stop is None

    async def close(self) -> None:
        """Stop receiving notifications (idempotent)."""
        stop, self._stop = self._stop, None
        if stop is not None:
            await stop()


class Database:
    """Base of the two backends: sessions over pooled connections, migrations, LISTEN."""

    #: ``"sqlite"`` or ``"postgresql"``.
    dialect: str = ""
    #: True when :meth:`listen` and :meth:`Session.notify` deliver notifications.
    supports_notify: bool = False
    #: PostgreSQL: the schema holding every object (None: the server's search_path).
    schema: str | None = None

    def __init__(self) -> None:
        self._opened = False
        self._closed = False
        self._open_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> Database:
        """Connect and migrate the catalog's own tables; idempotent. Returns ``self``."""
        if self._closed:
            raise SessionClosedError("this database was closed")
        if self._opened:
            return self
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                await self._open_backend()
                try:
                    await run_migrations(self, "catalog", CATALOG_MIGRATIONS)
                except BaseException:
                    await self._close_backend()
                    raise
                self._opened = True
        return self

    async def close(self) -> None:
        """Close every idle connection; sessions still out close theirs when put back."""
        if self._closed:
            return
        self._closed = True
        if self._opened or self._open_lock is not None:
            await self._close_backend()

    @property
    def closed(self) -> bool:
        return self._closed

    def __await__(self) -> Generator[Any, None, Database]:
        return self.open().__await__()

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ sessions

    async def get_session(self, lazy: bool = False, *, readonly: bool = False) -> Session:
        """A new session; it holds a connection from now on unless ``lazy``.

        Give it back with :meth:`put_session` (which rolls back what was not committed).
        ``readonly`` sessions read one consistent snapshot and never take SQLite's write
        lock, so they run alongside writers.
        """
        if not self._opened:
            await self.open()
        session = self._new_session(readonly=readonly)
        if not lazy:
            await session.connect()
        return session

    def _new_session(self, *, readonly: bool = False) -> Session:
        """A lazy session without the open check (used while opening)."""
        if self._closed:
            raise SessionClosedError("this database was closed")
        return Session(self, readonly=readonly)

    async def put_session(self, session: Session) -> None:
        """Roll back what ``session`` did not commit and return its connection."""
        await session.close()

    @asynccontextmanager
    async def session(self, *, lazy: bool = True, readonly: bool = False) -> AsyncIterator[Session]:
        """``async with db.session() as s:`` — rolled back unless ``await s.commit()``."""
        s = await self.get_session(lazy=lazy, readonly=readonly)
        try:
            yield s
        finally:
            await self.put_session(s)

    # ------------------------------------------------------------------ migrations

    async def migrate(self, component: str, steps: Sequence[Migration]) -> int:
        """Apply the ``steps`` of ``component`` not applied yet; returns its version.

        Each step runs once per database, in version order, in one transaction with its
        record in ``tsconnector_schema``; concurrent callers (tasks or processes) wait for
        each other, so the steps are never applied twice.
        """
        await self.open()
        return await run_migrations(self, component, steps)

    async def schema_version(self, component: str) -> int:
        """The highest applied migration version of ``component`` (0 if none)."""
        await self.open()
        async with self.session(readonly=True) as s:
            return await schema_version(s, component)

    # ------------------------------------------------------------------ notifications

    def channel_name(self, channel: str) -> str:
        """The server-side name of a notification channel (scoped to the schema, if any)."""
        return check_identifier(channel)

    async def listen(self, channel: str, callback: NotifyCallback) -> Listener:
        """Call ``callback(channel, payload)`` for each notification (PostgreSQL only).

        Notifications are wake-up hints: one may be missed when the listening connection
        is lost, so a consumer must also look for work on its own from time to time.
        """
        raise NotSupportedError(f"{type(self).__name__} has no LISTEN/NOTIFY")

    # ------------------------------------------------------------------ for subclasses

    @property
    def sql(self) -> Dialect:
        """The SQL builder of this backend (internal)."""
        raise NotImplementedError

    async def _open_backend(self) -> None:
        raise NotImplementedError

    async def _close_backend(self) -> None:
        raise NotImplementedError

    async def _acquire(self) -> DriverConnection:
        raise NotImplementedError

    async def _release(self, conn: DriverConnection, *, discard: bool = False) -> None:
        raise NotImplementedError

    async def _migration_lock(self, session: Session, component: str) -> None:
        """Serialise migrations across processes inside ``session``'s transaction."""
        raise NotImplementedError

    async def _ddl_lock(self, session: Session, name: str) -> None:
        """Serialise ``CREATE ... IF NOT EXISTS`` of ``name`` across processes (if needed)."""

    def _notify_sql(self) -> str | None:
        """SQL sending a notification (``$1`` channel, ``$2`` payload), or None."""
        return None
