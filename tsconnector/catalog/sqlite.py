"""``SqliteDB``: the embedded catalog, a SQLite file (or ``:memory:``) through aiosqlite.

Every SQLite call runs in aiosqlite's thread, never on the event loop. A file database
gets a small pool of connections in WAL mode with a busy timeout, so several processes
can share the file. Write transactions start with ``BEGIN IMMEDIATE``: they take the
file's write lock up front, which turns a concurrent writer into a bounded wait (the
busy timeout) instead of a failed lock upgrade, and sessions of this process queue for
the lock in order on the event loop. Read-only sessions (``readonly=True``) start with a
plain ``BEGIN`` and read a snapshot alongside writers. A ``:memory:`` database has one
connection, shared by all sessions in turn.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import aiosqlite

from .database import Database
from .dialects import DIALECTS, Dialect
from .driver import Record
from .errors import (
    CatalogBusy,
    DatabaseError,
    DriverErrorMapper,
    IntegrityError,
    MissingTable,
    SessionClosedError,
)
from .params import sqlite_bindings
from .regex import sqlite_regexp
from .session import Session
from .timeouts import bounded

#: Oldest SQLite with everything used here (RETURNING).
MIN_SQLITE = (3, 35, 0)
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SqliteDB(Database):
    """A catalog in a SQLite file, or in memory (``":memory:"``, the default).

    ``path_or_uri`` is a path or a ``file:`` URI (``file:x.db?mode=ro``). ``busy_timeout``
    bounds every wait for the write lock (seconds; other processes and this one);
    ``max_size`` is the number of connections of a file database; ``synchronous`` is
    SQLite's durability setting (``FULL`` syncs every commit; ``NORMAL`` may lose the
    last commits on power loss, never on a crash of the process).
    """

    dialect = "sqlite"

    def __init__(
        self,
        path_or_uri: str | os.PathLike[str] = ":memory:",
        *,
        busy_timeout: float = 30.0,
        max_size: int = 4,
        synchronous: str = "FULL",
    ) -> None:
        super().__init__()
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(
                f"SqliteDB needs SQLite >= {'.'.join(map(str, MIN_SQLITE))}, "
                f"this Python has {sqlite3.sqlite_version}"
            )
        target = os.fspath(path_or_uri)
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        if busy_timeout < 0 or max_size < 1:
            raise ValueError("busy_timeout must be >= 0 and max_size >= 1")
        self.path = target
        self._uri = target.startswith("file:")
        self.memory = target in ("", ":memory:") or (
            self._uri and (":memory:" in target or "mode=memory" in target)
        )
        self.busy_timeout = busy_timeout
        self._synchronous = synchronous.upper()
        self._max_size = 1 if self.memory else max_size
        self._idle: list[aiosqlite.Connection] = []
        self._all: set[aiosqlite.Connection] = set()
        self._background: set[asyncio.Future[Any]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._write_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"SqliteDB({self.path!r})"

    @property
    def sql(self) -> Dialect:
        return DIALECTS["sqlite"]

    # ------------------------------------------------------------------ pool

    async def _open_backend(self) -> None:
        self._slots = asyncio.Semaphore(self._max_size)
        self._write_lock = asyncio.Lock()
        conn = await self._acquire()  # fail early on a bad path
        await self._release(conn)

    async def _close_backend(self) -> None:
        while self._background:  # connects and releases that outlived a cancelled caller
            await asyncio.gather(*list(self._background), return_exceptions=True)
        idle, self._idle = self._idle, []
        for conn in idle:
            self._all.discard(conn)
            await conn.close()

    def _in_background(self, awaitable: Any) -> asyncio.Future[Any]:
        """Run ``awaitable`` to the end even if the caller is cancelled; close() waits."""
        future: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
        self._background.add(future)
        future.add_done_callback(self._background.discard)
        return future

    async def _connect(self) -> aiosqlite.Connection:
        if not self.memory and not self._uri:
            _check_folder(self.path)
        with _mapped_errors():
            conn = await aiosqlite.connect(
                self.path, uri=self._uri, isolation_level=None, cached_statements=256
            )
        try:
            conn.row_factory = sqlite3.Row
            with _mapped_errors():
                await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                if not self.memory:
                    mode = await self._switch_to_wal(conn)
                    if mode != "wal" and "mode=ro" not in self.path:
                        raise DatabaseError(f"could not switch {self.path!r} to WAL ({mode!r})")
                await conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                await conn.execute("PRAGMA foreign_keys = ON")
                await conn.create_function("regexp", 2, sqlite_regexp, deterministic=True)
        except BaseException:
            await conn.close()
            raise
        self._all.add(conn)
        return conn

    async def _switch_to_wal(self, conn: aiosqlite.Connection) -> str:
        """``PRAGMA journal_mode = WAL``, retried while another connection holds the lock.

        SQLite answers "database is locked" at once, without waiting out busy_timeout,
        when several connections switch a brand-new file at the same moment (each holds
        a shared lock and wants an exclusive one); so retry, within busy_timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
                return str(rows[0][0]).lower() if rows else ""
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 0.2)

    async def _acquire(self) -> _SqliteConnection:
        if self._closed:
            raise SessionClosedError("this database was closed")
        assert self._slots is not None
        assert self._write_lock is not None
        await bounded(self._slots.acquire(), self.busy_timeout, "a free SQLite connection")
        try:
            if self._idle:
                conn = self._idle.pop()
            else:
                # aiosqlite cannot cancel a connect cleanly: let it finish, keep the result.
                connecting = self._in_background(self._connect())
                try:
                    conn = await asyncio.shield(connecting)
                except asyncio.CancelledError:
                    connecting.add_done_callback(self._adopt)
                    raise
        except BaseException:
            self._slots.release()
            raise
        return _SqliteConnection(conn, self._write_lock, self.busy_timeout)

    def _adopt(self, connecting: asyncio.Future[aiosqlite.Connection]) -> None:
        """A connection made for a caller that was cancelled meanwhile: keep it idle."""
        if connecting.cancelled() or connecting.exception() is not None:
            return
        conn = connecting.result()
        if self._closed:
            self._all.discard(conn)
            self._in_background(conn.close())
        else:
            self._idle.append(conn)

    async def _release(self, conn: Any, *, discard: bool = False) -> None:
        assert isinstance(conn, _SqliteConnection)
        conn.release_write_lock()
        # Finish even if the caller is cancelled: a half-released connection would be lost.
        await asyncio.shield(self._in_background(self._finish_release(conn, discard)))

    async def _finish_release(self, conn: _SqliteConnection, discard: bool) -> None:
        assert self._slots is not None
        raw = conn.raw
        try:
            if discard or conn.dirty or raw.in_transaction:
                try:
                    await conn.reset()
                except Exception:
                    discard = True
                if self.memory:  # the database lives in its only connection: keep it
                    discard = False
            if discard or self._closed:
                self._all.discard(raw)
                await raw.close()
            else:
                self._idle.append(raw)
        finally:
            self._slots.release()

    async def _migration_lock(self, session: Session, component: str) -> None:
        # A write transaction (BEGIN IMMEDIATE) holds the file's only write lock.
        await session.execute("SELECT 1")


class _SqliteConnection:
    """One aiosqlite connection held by a session (see :class:`~.driver.DriverConnection`)."""

    def __init__(self, conn: aiosqlite.Connection, write_lock: asyncio.Lock, wait: float) -> None:
        self.raw = conn
        self._write_lock = write_lock
        self._wait = wait
        self._holds_lock = False
        self._query_only = False
        #: A BEGIN was interrupted (cancelled): it may still run; reset before reuse.
        self.dirty = False

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        before = self.raw.total_changes
        with _mapped_errors():
            await self.raw.execute_fetchall(sql, sqlite_bindings(params))
        return self.raw.total_changes - before

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with _mapped_errors():
            await self.raw.executemany(sql, [sqlite_bindings(p) for p in rows])

    async def fetch_rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        with _mapped_errors():
            return list(await self.raw.execute_fetchall(sql, sqlite_bindings(params)))

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Record]:
        rows = await self.fetch_rows(sql, params)
        if not rows:
            return []
        keys = rows[0].keys()  # type: ignore[attr-defined]
        return [dict(zip(keys, row)) for row in rows]

    async def iterate(
        self, sql: str, params: Sequence[Any], prefetch: int
    ) -> AsyncIterator[Record]:
        with _mapped_errors():
            cursor = await self.raw.execute(sql, sqlite_bindings(params))
        try:
            keys: list[str] | None = None
            while True:
                with _mapped_errors():
                    rows = list(await cursor.fetchmany(prefetch))
                if not rows:
                    return
                if keys is None:
                    keys = rows[0].keys()
                for row in rows:
                    yield dict(zip(keys, row))
        finally:
            await cursor.close()

    async def begin(self, *, readonly: bool) -> None:
        if readonly:
            self._query_only = True
            try:
                with _mapped_errors():
                    await self.raw.execute_fetchall("PRAGMA query_only = 1")
                    await self.raw.execute_fetchall("BEGIN")
            except BaseException:
                self.dirty = True
                raise
            return
        await bounded(self._write_lock.acquire(), self._wait, "the write lock (another session)")
        self._holds_lock = True
        try:
            with _mapped_errors():
                await self.raw.execute_fetchall("BEGIN IMMEDIATE")
        except BaseException:
            self.dirty = True
            self.release_write_lock()
            raise

    async def commit(self) -> None:
        with _mapped_errors():
            await self.raw.execute_fetchall("COMMIT")
        self.release_write_lock()
        await self._end_query_only()

    async def rollback(self) -> None:
        try:
            if self.raw.in_transaction:
                with _mapped_errors():
                    await self.raw.execute_fetchall("ROLLBACK")
        finally:
            self.release_write_lock()
        await self._end_query_only()

    async def _end_query_only(self) -> None:
        if self._query_only:
            self._query_only = False
            with _mapped_errors():
                await self.raw.execute_fetchall("PRAGMA query_only = 0")

    def in_transaction(self) -> bool:
        return bool(self.raw.in_transaction)

    async def reset(self) -> None:
        """Back to autocommit and writable, whatever ran before (queued after it)."""
        try:
            await self.raw.execute_fetchall("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "no transaction is active" not in str(exc):
                raise
        await self.raw.execute_fetchall("PRAGMA query_only = 0")
        self._query_only = False
        self.dirty = False

    def release_write_lock(self) -> None:
        if self._holds_lock:
            self._holds_lock = False
            self._write_lock.release()


def _check_folder(path: str) -> None:
    """A clear error for a file in a missing directory (before SQLite's vaguer one)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DatabaseError(f"cannot open {path!r}: no directory {folder!r}")


def _mapped(exc: BaseException) -> BaseException | None:
    """The catalog error for a sqlite3/aiosqlite error (None: leave it as it is)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(str(exc))
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc)
        if message.startswith("no such table"):
            table = message.partition(":")[2].strip().removeprefix("main.")
            return MissingTable(message, table=table or None)
        if "database is locked" in message or "database table is locked" in message:
            return CatalogBusy(message)
        return DatabaseError(message)
    if isinstance(exc, sqlite3.Error):
        return DatabaseError(str(exc))
    if isinstance(exc, ValueError) and "closed" in str(exc).lower():
        return SessionClosedError(str(exc))  # aiosqlite: "Connection closed"
    return None


_MAPPER = DriverErrorMapper(_mapped)


def _mapped_errors() -> DriverErrorMapper:
    """sqlite3 errors as catalog errors (the original as ``__cause__``)."""
    return _MAPPER
