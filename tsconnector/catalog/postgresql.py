"""``PostgresqlDB``: the shared catalog for many processes and hosts, through asyncpg.

asyncpg comes with the ``postgres`` extra and is imported only when a ``PostgresqlDB``
is made. With ``schema=``, every object the catalog (and each layer above) creates lives
in that schema: it is created on open, and each pooled connection starts with
``search_path`` set to it, so a test can use a throwaway schema and drop it. Notification
channels are scoped to the schema too (:meth:`PostgresqlDB.channel_name`).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from .database import Database, Listener, NotifyCallback
from .dialects import DIALECTS, Dialect
from .driver import Record
from .errors import (
    CatalogBusy,
    ConflictError,
    DatabaseError,
    DriverErrorMapper,
    IntegrityError,
    MissingTable,
    SessionClosedError,
)
from .names import check_identifier, quote_ident
from .session import Session
from .timeouts import bounded

_MISSING_EXTRA = "PostgresqlDB needs asyncpg: pip install 'tsconnector[postgres]'"


def _asyncpg() -> Any:
    """The asyncpg module, or an ImportError that names the extra to install."""
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ImportError(_MISSING_EXTRA) from exc
    return asyncpg


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock($1)`` made from ``parts``.

    Include ``db.schema`` in the parts to keep the locks of two schemas apart.
    """
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresqlDB(Database):
    """A catalog in PostgreSQL: ``PostgresqlDB("postgresql://user@host:5432/db")``.

    ``dsn`` is anything asyncpg accepts (host, port, user, password, database and query
    parameters such as ``sslmode``). ``min_size``/``max_size`` size the connection pool;
    ``schema`` (an identifier) holds every object; ``acquire_timeout`` bounds the wait
    for a pooled connection. Other keywords go to ``asyncpg.create_pool``.
    """

    dialect = "postgresql"
    supports_notify = True

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        schema: str | None = None,
        acquire_timeout: float = 30.0,
        **pool_options: Any,
    ) -> None:
        super().__init__()
        _asyncpg()
        if schema is not None:
            check_identifier(schema)
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError("need 0 <= min_size <= max_size and max_size >= 1")
        self.dsn = dsn
        self.schema = schema
        self.acquire_timeout = acquire_timeout
        self._min_size = min_size
        self._max_size = max_size
        self._pool_options = pool_options
        self._pool: Any = None
        self._listen_conn: Any = None
        self._listen_lock: asyncio.Lock | None = None
        self._listeners: dict[int, Listener] = {}
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"PostgresqlDB(schema={self.schema!r})"

    @property
    def sql(self) -> Dialect:
        return DIALECTS["postgresql"]

    def _server_settings(self) -> dict[str, str]:
        settings = dict(self._pool_options.get("server_settings") or {})
        if self.schema is not None:
            settings["search_path"] = quote_ident(self.schema)
        return settings

    # ------------------------------------------------------------------ pool

    async def _open_backend(self) -> None:
        asyncpg = _asyncpg()
        options = {k: v for k, v in self._pool_options.items() if k != "server_settings"}
        with _mapped_errors():
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=self._server_settings(),
                **options,
            )
        if self.schema is None:
            return
        try:
            with _mapped_errors():
                async with self._pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock($1)", advisory_key("tsconnector", "schema")
                    )
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
        except BaseException:
            await self._close_backend()
            raise

    async def _close_backend(self) -> None:
        if self._listen_conn is not None:
            conn = self._listen_conn
            self._listen_lost(conn)
            await conn.close()
        for task in list(self._callback_tasks):
            task.cancel()
        while self._background:  # releases that outlived a cancelled caller
            await asyncio.gather(*list(self._background), return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.acquire_timeout)
            except asyncio.TimeoutError:  # sessions still out: close their connections
                pool.terminate()

    async def _acquire(self) -> _PgConnection:
        if self._closed or self._pool is None:
            raise SessionClosedError("this database was closed")
        with _mapped_errors():
            conn = await bounded(
                self._pool.acquire(), self.acquire_timeout, "a free PostgreSQL connection"
            )
        return _PgConnection(conn)

    async def _release(self, conn: Any, *, discard: bool = False) -> None:
        assert isinstance(conn, _PgConnection)
        # Finish even if the caller is cancelled: a half-released connection would be lost.
        releasing = asyncio.ensure_future(self._finish_release(conn.raw, discard))
        self._background.add(releasing)
        releasing.add_done_callback(self._background.discard)
        await asyncio.shield(releasing)

    async def _finish_release(self, raw: Any, discard: bool) -> None:
        if not discard and not raw.is_closed() and raw.is_in_transaction():
            try:  # e.g. a BEGIN that completed after its caller was cancelled
                await raw.execute("ROLLBACK")
            except Exception:
                discard = True
        if discard or self._pool is None:
            raw.terminate()
        if self._pool is not None:
            await self._pool.release(raw)

    async def _migration_lock(self, session: Session, component: str) -> None:
        key = advisory_key("tsconnector", "migrate", self.schema or "")
        await session.execute("SELECT pg_advisory_xact_lock($1)", key)

    async def _ddl_lock(self, session: Session, name: str) -> None:
        key = advisory_key("tsconnector", "ddl", self.schema or "", name)
        await session.execute("SELECT pg_advisory_xact_lock($1)", key)

    # ------------------------------------------------------------------ LISTEN/NOTIFY

    def channel_name(self, channel: str) -> str:
        """``channel`` on the server: ``<schema>__<channel>`` when a schema is set."""
        check_identifier(channel)
        name = f"{self.schema}__{channel}" if self.schema else channel
        if len(name) > 63:
            raise ValueError(f"channel name {name!r} is longer than 63 characters")
        return name

    def _notify_sql(self) -> str | None:
        return "SELECT pg_notify($1, $2)"

    async def listen(self, channel: str, callback: NotifyCallback) -> Listener:
        """Call ``callback(channel, payload)`` on each notification of ``channel``.

        Notifications arrive on one dedicated connection (outside the pool) after the
        sending transaction commits. They are hints: reconnecting is left to the caller
        (``listener.closed`` turns True when the connection is lost).
        """
        await self.open()
        name = self.channel_name(channel)
        if self._listen_lock is None:
            self._listen_lock = asyncio.Lock()

        def handler(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            result = callback(channel, payload)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_tasks.discard)

        async with self._listen_lock:
            if self._listen_conn is None or self._listen_conn.is_closed():
                with _mapped_errors():
                    self._listen_conn = await _asyncpg().connect(
                        self.dsn, server_settings=self._server_settings()
                    )
                self._listen_conn.add_termination_listener(self._listen_lost)
            conn = self._listen_conn
            with _mapped_errors():
                await conn.add_listener(name, handler)

        async def stop() -> None:
            self._listeners.pop(id(handler), None)
            if conn.is_closed():
                return
            with _mapped_errors():
                await conn.remove_listener(name, handler)

        listener = Listener(channel, stop)
        self._listeners[id(handler)] = listener
        return listener

    def _listen_lost(self, _conn: Any) -> None:
        """The listening connection is gone: every listener is closed."""
        listeners, self._listeners = self._listeners, {}
        for listener in listeners.values():
            listener._stop = None
        self._listen_conn = None


class _PgConnection:
    """One pooled asyncpg connection held by a session."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        with _mapped_errors():
            status = await self.raw.execute(sql, *params)
        last = str(status).rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else -1

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with _mapped_errors():
            await self.raw.executemany(sql, rows)

    async def fetch_rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        with _mapped_errors():
            return list(await self.raw.fetch(sql, *params))

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Record]:
        with _mapped_errors():
            return [dict(r.items()) for r in await self.raw.fetch(sql, *params)]

    async def iterate(
        self, sql: str, params: Sequence[Any], prefetch: int
    ) -> AsyncIterator[Record]:
        with _mapped_errors():
            cursor = await self.raw.cursor(sql, *params)
        while True:
            with _mapped_errors():
                rows = await cursor.fetch(prefetch)
            if not rows:
                return
            for row in rows:
                yield dict(row.items())

    async def begin(self, *, readonly: bool) -> None:
        sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if readonly else "BEGIN"
        with _mapped_errors():
            await self.raw.execute(sql)

    async def commit(self) -> None:
        with _mapped_errors():
            await self.raw.execute("COMMIT")

    async def rollback(self) -> None:
        if self.raw.is_in_transaction():
            with _mapped_errors():
                await self.raw.execute("ROLLBACK")

    def in_transaction(self) -> bool:
        return bool(self.raw.is_in_transaction())


def _mapped(exc: BaseException) -> BaseException | None:
    """The catalog error for an asyncpg error (None: leave it as it is)."""
    asyncpg = _asyncpg()
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None)
        message = str(exc)
        if isinstance(exc, asyncpg.UndefinedTableError):
            return MissingTable(message, sqlstate=state)
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return IntegrityError(message, sqlstate=state)
        if isinstance(exc, (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)):
            return ConflictError(message)
        if isinstance(exc, asyncpg.LockNotAvailableError):
            return CatalogBusy(message)
        return DatabaseError(message, sqlstate=state)
    if isinstance(exc, (asyncpg.InterfaceError, OSError)):
        return DatabaseError(f"{type(exc).__name__}: {exc}")
    return None


_MAPPER = DriverErrorMapper(_mapped)


def _mapped_errors() -> DriverErrorMapper:
    """asyncpg errors as catalog errors (the original as ``__cause__``)."""
    return _MAPPER
