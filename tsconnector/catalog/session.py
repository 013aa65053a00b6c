"""``Session``: one connection, one transaction at a time, and the SQL API on top of it.

A session takes its connection lazily (first statement) unless made with
``lazy=False``, and opens a transaction at its first statement after each
``commit()``/``rollback()``. It is used by one task at a time.

The low-level API is the same on both backends and always parameterised: ``execute``,
``executemany``, ``fetch``, ``fetchrow``, ``fetchval`` and ``iterate`` take SQL with
``$1, $2...`` placeholders and the values as extra arguments; rows come back as dicts.
``s[name]`` gives a :class:`~tsconnector.catalog.table.Table` of dict rows, and
``get_db_file`` a chunked blob.

A failed statement ends the usefulness of the transaction on both backends (PostgreSQL's
rule): until ``rollback()`` further statements raise ``TransactionAborted``. Inside
``async with s.savepoint():`` a failure rolls back to the savepoint instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from .driver import DriverConnection, Record
from .errors import SessionClosedError, TransactionAborted
from .names import quote_ident

if TYPE_CHECKING:
    from .blobs import DbFile
    from .database import Database
    from .table import Row, Table


class Session:
    """A unit of work on a :class:`~tsconnector.catalog.database.Database`."""

    def __init__(self, db: Database, *, readonly: bool = False) -> None:
        self.db = db
        self.readonly = readonly
        self._conn: DriverConnection | None = None
        self._closed = False
        self._in_tx = False
        self._failed = False
        self._savepoints = 0
        self._tables: dict[str, Table] = {}

    # ------------------------------------------------------------------ state

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.db.dialect

    @property
    def closed(self) -> bool:
        """True once the session was put back."""
        return self._closed

    @property
    def in_transaction(self) -> bool:
        """True between the first statement and ``commit()``/``rollback()``."""
        return self._in_tx

    async def connect(self) -> None:
        """Take a connection now (done by the first statement otherwise)."""
        self._check_open()
        if self._conn is None:
            self._conn = await self.db._acquire()

    async def _transaction(self) -> DriverConnection:
        """The connection, inside a transaction (begun here if needed)."""
        conn = self._conn
        if conn is not None and self._in_tx and not self._failed and not self._closed:
            return conn
        self._check_open()
        if self._failed:
            raise TransactionAborted(
                "a statement of this transaction failed; call rollback() before going on"
            )
        if self._conn is None:
            self._conn = await self.db._acquire()
        if not self._in_tx:
            await self._conn.begin(readonly=self.readonly)
            self._in_tx = True
        return self._conn

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError("this session was put back; get a new one")

    # ------------------------------------------------------------------ transactions

    async def commit(self) -> None:
        """Make this transaction's changes permanent (a no-op when nothing ran)."""
        self._check_open()
        if self._savepoints:
            raise RuntimeError("commit() inside 'async with session.savepoint()'")
        if not self._in_tx or self._conn is None:
            return
        if self._failed:
            await self.rollback()
            raise TransactionAborted(
                "a statement of this transaction failed; the transaction was rolled back"
            )
        try:
            await self._conn.commit()
        except BaseException:
            self._failed = True
            await self._abandon()
            raise
        self._in_tx = False

    async def rollback(self) -> None:
        """Undo everything since the last commit."""
        self._check_open()
        if self._savepoints:
            raise RuntimeError("rollback() inside 'async with session.savepoint()'")
        if self._conn is not None and self._in_tx:
            try:
                await self._conn.rollback()
            except BaseException:
                await self._abandon()
                raise
        self._in_tx = False
        self._failed = False

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[Session]:
        """A nested transaction: an exception inside rolls back to where it began.

        The exception still propagates; what ran before the savepoint is kept, and the
        transaction stays usable.
        """
        conn = await self._transaction()
        name = f"tsc_sp_{self._savepoints + 1}"
        await self._run(conn.execute(f"SAVEPOINT {name}", ()))
        self._savepoints += 1
        try:
            yield self
        except BaseException:
            self._savepoints -= 1
            await self._undo_savepoint(conn, name)
            raise
        self._savepoints -= 1
        if self._failed:
            await self._undo_savepoint(conn, name)
            raise TransactionAborted(
                "a statement inside the savepoint failed; it was rolled back to the savepoint"
            )
        await self._run(conn.execute(f"RELEASE SAVEPOINT {name}", ()))

    async def _undo_savepoint(self, conn: DriverConnection, name: str) -> None:
        if self._closed or self._conn is not conn or not self._in_tx:
            return
        try:
            await conn.execute(f"ROLLBACK TO SAVEPOINT {name}", ())
            await conn.execute(f"RELEASE SAVEPOINT {name}", ())
        except BaseException:
            self._failed = True
            raise
        self._failed = False

    async def close(self) -> None:
        """Roll back what was not committed and give the connection back (idempotent)."""
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        discard = False
        if self._in_tx:
            try:
                await conn.rollback()
            except BaseException:
                discard = True
        self._in_tx = False
        await self.db._release(conn, discard=discard)

    async def _abandon(self) -> None:
        """After a failed COMMIT/ROLLBACK: give up the connection (it may be broken)."""
        conn, self._conn = self._conn, None
        self._in_tx = False
        self._failed = False
        if conn is not None:
            await self.db._release(conn, discard=True)

    async def _run(self, awaitable: Any) -> Any:
        """Await a driver call; any failure marks the transaction failed."""
        try:
            return await awaitable
        except BaseException:
            self._failed = True
            raise

    # ------------------------------------------------------------------ low-level SQL

    def quote_ident(self, name: str) -> str:
        """``name`` as a quoted identifier (the same rule on both backends)."""
        return quote_ident(name)

    async def execute(self, sql: str, *params: Any) -> int:
        """Run one statement with ``$n`` parameters; the number of rows changed.

        On PostgreSQL, SQL without parameters may hold several statements.
        """
        conn = await self._transaction()
        try:
            return await conn.execute(sql, params)
        except BaseException:
            self._failed = True
            raise

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        conn = await self._transaction()
        try:
            await conn.executemany(sql, rows)
        except BaseException:
            self._failed = True
            raise

    async def fetch(self, sql: str, *params: Any) -> list[Record]:
        """All rows of a query as dicts (column name -> value)."""
        conn = await self._transaction()
        try:
            return await conn.fetch(sql, params)
        except BaseException:
            self._failed = True
            raise

    async def fetchrow(self, sql: str, *params: Any) -> Record | None:
        """The first row of a query as a dict, or None."""
        rows = await self.fetch(sql, *params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *params: Any) -> Any:
        """The first column of the first row, or None when there is no row."""
        rows = await self._rows(sql, params)
        return rows[0][0] if rows else None

    async def iterate(self, sql: str, *params: Any, prefetch: int = 256) -> AsyncIterator[Record]:
        """Rows of a query as dicts, fetched ``prefetch`` at a time (for large results)."""
        conn = await self._transaction()
        rows = conn.iterate(sql, params, prefetch).__aiter__()
        try:
            while True:
                try:
                    row = await rows.__anext__()
                except StopAsyncIteration:
                    return
                except BaseException:
                    self._failed = True
                    raise
                yield row
        finally:
            closer = getattr(rows, "aclose", None)
            if closer is not None and not self._closed:
                await closer()

    async def _rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """Result rows as sequences (the table layer's fast path)."""
        conn = await self._transaction()
        try:
            return await conn.fetch_rows(sql, params)
        except BaseException:
            self._failed = True
            raise

    async def notify(self, channel: str, payload: str = "") -> None:
        """Send ``payload`` on ``channel`` when this transaction commits (PostgreSQL).

        A no-op on SQLite (``db.supports_notify`` is False there), so writers can call it
        on both backends.
        """
        name = self.db.channel_name(channel)
        sql = self.db._notify_sql()
        if sql is not None:
            await self.execute(sql, name, payload)

    # ------------------------------------------------------------------ tables and files

    def __getitem__(self, name: str) -> Table:
        """The table called ``name`` (it need not exist yet: ``await t.create_table()``)."""
        from .table import Table

        table = self._tables.get(name)
        if table is None:
            table = Table(self, name)
            self._tables[name] = table
        return table

    def table(self, name: str) -> Table:
        """Same as ``session[name]``."""
        return self[name]

    async def get_db_file(
        self, id: int | None = None, *, owner: Table | Row | None = None
    ) -> DbFile:
        """A blob: a new one when ``id`` is None, else the existing one (``RowNotFound``).

        A new file may have an ``owner`` (a table or one of its rows); it is deleted
        with its owner (``drop_table``, ``row.delete()``).
        """
        from .blobs import DbFile

        if id is None:
            return await DbFile.create(self, owner)
        return await DbFile.open(self, id)

    async def del_db_file(self, id: int) -> None:
        """Delete a blob and its chunks (``RowNotFound`` if there is none)."""
        from .blobs import DbFile

        await DbFile.remove(self, id)
