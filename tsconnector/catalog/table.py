"""``Table`` and ``Row``: dict rows with an id and a version, filtered and paged in SQL.

A row is a ``dict`` of ``str`` field names to ``str`` values plus two attributes:
``row.id`` (assigned on insert) and ``row.version`` (1 on insert, raised by every save).
``row.save()`` is last-writer-wins; ``table.save_if(row)`` saves only if the stored
version is still the one the row was read with, else it raises ``ConflictError``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConflictError, MultipleRowsFound, RowNotFound
from .names import check_field_name, check_row_fields, check_table_name
from .operators import Condition, OrderTerm

if TYPE_CHECKING:
    from .session import Session

_FILES_OF_TABLE = "DELETE FROM tsconnector_files WHERE owner_table = $1"
_FILES_OF_ROW = "DELETE FROM tsconnector_files WHERE owner_table = $1 AND owner_row = $2"


def _dumps(fields: Mapping[str, str]) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


class Row(dict[str, str]):
    """A row: field -> value, with ``id`` and ``version`` attributes."""

    __slots__ = ("_table", "id", "version")

    def __init__(
        self,
        fields: Mapping[str, str] | None = None,
        /,
        *,
        id: int | None = None,
        version: int = 0,
        table: Table | None = None,
    ) -> None:
        super().__init__(fields or {})
        self.id = id
        self.version = version
        self._table = table

    @property
    def table(self) -> Table:
        if self._table is None:
            raise RuntimeError("this row belongs to no table")
        return self._table

    async def save(self) -> None:
        """Store the fields: insert when ``id`` is None, else overwrite (last writer wins)."""
        await self.table.save(self)

    async def save_if(self, expected: int | None = None) -> None:
        """Store only if the stored version is ``expected`` (default: ``self.version``)."""
        await self.table.save_if(self, expected)

    async def delete(self) -> None:
        """Delete the row and the files it owns."""
        await self.table.delete(self)

    def __repr__(self) -> str:
        return f"Row({dict.__repr__(self)}, id={self.id!r}, version={self.version!r})"


class Table:
    """A table of rows in one session: ``session["name"]``."""

    def __init__(self, session: Session, name: str) -> None:
        self.session = session
        self.name = check_table_name(name)
        self._sql = session.db.sql

    def __repr__(self) -> str:
        return f"Table({self.name!r})"

    # ------------------------------------------------------------------ DDL

    async def create_table(self) -> None:
        """Create the table if it does not exist (safe from concurrent processes)."""
        await self.session.db._ddl_lock(self.session, self.name)
        for statement in self._sql.create_table(self.name):
            await self.session.execute(statement)

    async def drop_table(self) -> None:
        """Drop the table and the files it owns (``MissingTable`` if it does not exist)."""
        await self.session.execute(self._sql.drop_table(self.name))
        await self.session.execute(_FILES_OF_TABLE, self.name)

    async def create_index(self, field: str, *, unique: bool = False) -> None:
        """An index on ``field``'s value: serves Eq, In, order_by (and uniqueness)."""
        check_field_name(field)
        await self.session.execute(self._sql.create_index(self.name, field, unique=unique))

    # ------------------------------------------------------------------ rows

    async def new(self, fields: Mapping[str, str] | None = None, /, **more: str) -> Row:
        """Insert a row from ``fields`` and/or keywords; returns it with id and version 1."""
        row = Row({**fields, **more} if fields else more, table=self)
        await self._insert(row)
        return row

    async def _insert(self, row: Row) -> None:
        check_row_fields(row)
        rows = await self.session._rows(self._sql.insert(self.name), (_dumps(row),))
        row.id = int(rows[0][0])
        row.version = 1
        row._table = self

    async def new_many(self, rows: Iterable[Mapping[str, str]]) -> list[Row]:
        """Insert many rows in one round trip; returns them with ids (in order) and version 1.

        All rows are checked before anything is written.
        """
        new_rows = [Row(fields, table=self) for fields in rows]
        for row in new_rows:
            check_row_fields(row)
        if not new_rows:
            return []
        ids = await self._sql.allocate_ids(self.session, self.name, len(new_rows))
        await self._sql.insert_many(
            self.session, self.name, ids, [_dumps(row) for row in new_rows]
        )
        for row, row_id in zip(new_rows, ids):
            row.id = row_id
            row.version = 1
        return new_rows

    async def get(self, id: int) -> Row:
        """The row with this id, or ``RowNotFound``."""
        rows = await self.session._rows(self._sql.select_by_id(self.name), (self._id(id),))
        if not rows:
            raise RowNotFound(f"no row {id!r} in table {self.name!r}")
        return self._row(rows[0])

    async def save(self, row: Row) -> None:
        """Store ``row`` (insert if it has no id); last writer wins."""
        if row.id is None:
            await self._insert(row)
            return
        check_row_fields(row)
        rows = await self.session._rows(
            self._sql.update(self.name, compare=False), (self._id(row.id), _dumps(row))
        )
        if not rows:
            raise RowNotFound(f"no row {row.id!r} in table {self.name!r}")
        row.version = int(rows[0][0])
        row._table = self

    async def save_if(self, row: Row, expected: int | None = None) -> None:
        """Store ``row`` only if its stored version is ``expected`` (default ``row.version``).

        Raises ``ConflictError`` when another writer saved it since (the row keeps its
        fields and old version; re-read it, re-apply the change and try again), and
        ``RowNotFound`` when it was deleted.
        """
        if row.id is None:
            raise ValueError("save_if needs a stored row (row.id is None); use new()")
        check_row_fields(row)
        version = row.version if expected is None else expected
        if not isinstance(version, int) or isinstance(version, bool):
            raise TypeError(f"expected version must be int, not {type(version).__name__}")
        row_id = self._id(row.id)
        rows = await self.session._rows(
            self._sql.update(self.name, compare=True), (row_id, _dumps(row), version)
        )
        if rows:
            row.version = int(rows[0][0])
            row._table = self
            return
        current = await self.session._rows(self._sql.version_of(self.name), (row_id,))
        if not current:
            raise RowNotFound(f"no row {row.id!r} in table {self.name!r}")
        actual = int(current[0][0])
        raise ConflictError(
            f"row {row.id} of {self.name!r} is at version {actual}, not {version}",
            expected=version,
            actual=actual,
        )

    async def delete(self, row: Row | int) -> None:
        """Delete a row (or the row with this id) and the files it owns."""
        raw_id = row.id if isinstance(row, Row) else row
        if raw_id is None:
            raise ValueError("cannot delete a row that was never stored (id is None)")
        row_id = self._id(raw_id)
        changed = await self.session.execute(self._sql.delete(self.name), row_id)
        if changed == 0:
            raise RowNotFound(f"no row {row_id!r} in table {self.name!r}")
        await self.session.execute(_FILES_OF_ROW, self.name, row_id)

    # ------------------------------------------------------------------ queries

    async def query(
        self,
        where: Mapping[str, Condition] | None = None,
        order_by: OrderTerm | Sequence[OrderTerm] | None = None,
        offset: int = 0,
        limit: int | None = None,
        count: bool = False,
    ) -> Any:
        """Rows matching ``where``, in ``order_by`` order (then by id), paged in SQL.

        ``where`` maps field names to a ``str`` (equality), ``Eq``, ``In``, ``Like``,
        ``Re`` or ``Sql``; all must hold. ``order_by`` is a field, ``"id"``,
        ``Reversed(field)`` or a list of them. With ``count=True`` the number of rows
        the query would return (offset and limit applied) instead of a list.
        """
        params: list[Any] = []
        if count:
            sql = self._sql.count(self.name, where, params, offset=offset, limit=limit)
            return int((await self.session._rows(sql, params))[0][0])
        sql = self._sql.select(self.name, where, order_by, params, offset=offset, limit=limit)
        return [self._row(r) for r in await self.session._rows(sql, params)]

    async def count(self, **eq: str) -> int:
        """How many rows have these field values."""
        result: int = await self.query(where=eq, count=True)
        return result

    async def find(self, **eq: str) -> AsyncIterator[Row]:
        """Rows with these field values, in id order, streamed (not all in memory)."""
        params: list[Any] = []
        sql = self._sql.select(self.name, eq, None, params)
        async for record in self.session.iterate(sql, *params):
            yield self._row((record["id"], record["version"], record["data"]))

    async def find_first(self, **eq: str) -> Row | None:
        """The first row (lowest id) with these field values, or None."""
        rows = await self.query(where=eq, limit=1)
        return rows[0] if rows else None

    async def find_single(self, **eq: str) -> Row:
        """The only row with these field values: ``RowNotFound`` or ``MultipleRowsFound``."""
        rows = await self.query(where=eq, limit=2)
        if not rows:
            raise RowNotFound(f"no row of {self.name!r} matches {eq!r}")
        if len(rows) > 1:
            raise MultipleRowsFound(f"more than one row of {self.name!r} matches {eq!r}")
        result: Row = rows[0]
        return result

    # ------------------------------------------------------------------ helpers

    def _row(self, record: Sequence[Any]) -> Row:
        data = record[2]
        return Row(json.loads(data), id=int(record[0]), version=int(record[1]), table=self)

    def _id(self, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"row id must be int, not {type(value).__name__} ({value!r:.40})")
        return value
