"""The contract between a :class:`~tsconnector.catalog.session.Session` and a backend.

A backend (SQLite through aiosqlite, PostgreSQL through asyncpg) subclasses
:class:`~tsconnector.catalog.database.Database` (connections: ``_acquire``/``_release``)
and implements :class:`DriverConnection` for the connection a session holds. SQL
reaching these methods uses ``$1, $2...`` placeholders; driver errors leave them as
catalog errors (:mod:`.errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Protocol

Record = dict[str, Any]


class DriverConnection(Protocol):
    """One connection, used by one session at a time."""

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run a statement; the number of rows it changed (-1 if not known)."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""

    async def fetch_rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """All result rows as sequences (indexable by position)."""

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Record]:
        """All result rows as dicts of column name -> value."""

    def iterate(self, sql: str, params: Sequence[Any], prefetch: int) -> AsyncIterator[Record]:
        """Rows as dicts, fetched ``prefetch`` at a time (never all at once)."""

    async def begin(self, *, readonly: bool) -> None:
        """Start a transaction (SQLite write transactions take the write lock now)."""

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    def in_transaction(self) -> bool: ...

