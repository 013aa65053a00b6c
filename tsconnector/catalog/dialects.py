"""The SQL of the row tables, per backend: DDL, row statements and compiled queries.

A table holds ``id`` (the primary key), ``version`` (an integer raised by every save, for
compare-and-swap) and ``data``: the row's fields as a JSON object, ``TEXT`` on SQLite and
``JSONB`` on PostgreSQL. Field values are read with ``json_extract(data, '$.f')`` (SQLite)
or ``data->>'f'`` (PostgreSQL); field names are validated identifiers, so they can appear
in the SQL text, which lets expression indexes match. Every value is a ``$n`` parameter.

Indexes that serve equality filters:

- PostgreSQL: every table has a GIN index ``USING GIN (data jsonb_path_ops)`` (without
  a pending list, whose linear scan would slow every lookup after many inserts), and all
  ``Eq`` conditions of a query become one ``data @> $n::jsonb`` containment test (plus
  the same test per field, which a ``create_index`` B-tree index serves);
- both: ``Table.create_index(field)`` adds a B-tree expression index on the field's value,
  which serves ``Eq`` (SQLite), ``In``, prefix ``Like`` and ``order_by`` on that field.

Text compares by code point on both backends (SQLite's BINARY collation, PostgreSQL's
``COLLATE "C"``), and rows without the field sort first (last when reversed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .names import check_field_name, derived_name, quote_ident
from .operators import Condition, Eq, In, Like, OrderTerm, Re, Reversed, Sql
from .params import renumber

if TYPE_CHECKING:
    from .session import Session

ROW_COLUMNS = "id, version, data"


class Dialect:
    """SQL text shared by both backends; subclasses fill in what differs."""

    name = ""

    # ------------------------------------------------------------------ tables

    def create_table(self, table: str) -> list[str]:
        raise NotImplementedError

    def drop_table(self, table: str) -> str:
        return f"DROP TABLE {quote_ident(table)}"

    def create_index(self, table: str, field: str, *, unique: bool) -> str:
        raise NotImplementedError

    def index_name(self, table: str, field: str, *, unique: bool) -> str:
        return derived_name(table, ("ux_" if unique else "ix_") + field)

    # ------------------------------------------------------------------ rows

    def json_param(self, n: int) -> str:
        return f"${n}"

    def insert(self, table: str) -> str:
        return f"INSERT INTO {quote_ident(table)} (data) VALUES ({self.json_param(1)}) RETURNING id"

    async def allocate_ids(self, session: Session, table: str, count: int) -> list[int]:
        """``count`` new row ids for ``table``, unique and increasing."""
        raise NotImplementedError

    async def insert_many(
        self, session: Session, table: str, ids: list[int], datas: list[str]
    ) -> None:
        """Insert rows with the given ids and JSON data in one statement or batch."""
        raise NotImplementedError

    def select_by_id(self, table: str) -> str:
        return f"SELECT {ROW_COLUMNS} FROM {quote_ident(table)} WHERE id = $1"

    def version_of(self, table: str) -> str:
        return f"SELECT version FROM {quote_ident(table)} WHERE id = $1"

    def update(self, table: str, *, compare: bool) -> str:
        cas = " AND version = $3" if compare else ""
        return (
            f"UPDATE {quote_ident(table)} SET data = {self.json_param(2)}, version = version + 1 "
            f"WHERE id = $1{cas} RETURNING version"
        )

    def delete(self, table: str) -> str:
        return f"DELETE FROM {quote_ident(table)} WHERE id = $1"

    # ------------------------------------------------------------------ queries

    def field(self, name: str) -> str:
        """The field's value as text (NULL when the row lacks it), for ``Sql`` and ``Re``."""
        raise NotImplementedError

    def ordered_field(self, name: str) -> str:
        """The field's value with the code-point collation (compare, sort, index)."""
        return self.field(name)

    def select(
        self,
        table: str,
        where: Mapping[str, Condition] | None,
        order_by: OrderTerm | Sequence[OrderTerm] | None,
        params: list[Any],
        *,
        offset: int = 0,
        limit: int | None = None,
        columns: str = ROW_COLUMNS,
    ) -> str:
        """``SELECT columns FROM table WHERE ... ORDER BY ... LIMIT/OFFSET``; appends params."""
        sql = f"SELECT {columns} FROM {quote_ident(table)}"
        sql += self.where(where, params)
        sql += self.order(order_by)
        sql += self.limit(offset, limit, params)
        return sql

    def count(
        self,
        table: str,
        where: Mapping[str, Condition] | None,
        params: list[Any],
        *,
        offset: int = 0,
        limit: int | None = None,
    ) -> str:
        """How many rows the same query would return (offset and limit applied)."""
        cond = self.where(where, params)
        if offset == 0 and limit is None:
            return f"SELECT count(*) FROM {quote_ident(table)}{cond}"
        window = self.limit(offset, limit, params)
        return f"SELECT count(*) FROM (SELECT 1 FROM {quote_ident(table)}{cond}{window}) AS q"

    def where(self, where: Mapping[str, Condition] | None, params: list[Any]) -> str:
        if not where:
            return ""
        if not isinstance(where, Mapping):
            raise TypeError(f"where must be a mapping of field -> condition, not {where!r:.60}")
        terms = self.conditions(where, params)
        return " WHERE " + " AND ".join(terms) if terms else ""

    def conditions(self, where: Mapping[str, Condition], params: list[Any]) -> list[str]:
        terms: list[str] = []
        for name, cond in where.items():
            check_field_name(name)
            terms.append(self.condition(name, cond, params))
        return terms

    def condition(self, name: str, cond: Condition, params: list[Any]) -> str:
        if isinstance(cond, str):
            cond = Eq(cond)
        if isinstance(cond, Eq):
            params.append(cond.value)
            return f"{self.ordered_field(name)} = ${len(params)}"
        if isinstance(cond, In):
            return self.in_list(name, cond, params)
        if isinstance(cond, Like):
            return self.like(name, cond, params)
        if isinstance(cond, Re):
            params.append(cond.pattern)
            return self.regex(name, len(params))
        if isinstance(cond, Sql):
            text = renumber(cond.text(self.name), len(params), self.name)
            params.extend(cond.params)
            return "(" + text.replace("{field}", self.field(name)) + ")"
        raise TypeError(
            f"condition for field {name!r} must be str, Eq, In, Like, Re or Sql, "
            f"not {type(cond).__name__}"
        )

    def in_list(self, name: str, cond: In, params: list[Any]) -> str:
        raise NotImplementedError

    def like(self, name: str, cond: Like, params: list[Any]) -> str:
        raise NotImplementedError

    def regex(self, name: str, n: int) -> str:
        raise NotImplementedError

    def order(self, order_by: OrderTerm | Sequence[OrderTerm] | None) -> str:
        if order_by is None:
            return " ORDER BY id"
        terms = [order_by] if isinstance(order_by, (str, Reversed)) else list(order_by)
        parts: list[str] = []
        has_id = False
        for term in terms:
            descending = isinstance(term, Reversed)
            name = term.field if isinstance(term, Reversed) else term
            check_field_name(name, allow_reserved=True)
            if name == "version":
                raise ValueError("order_by 'version' is not supported (use a field or 'id')")
            if name == "id":
                has_id = True
                parts.append("id DESC" if descending else "id")
            else:
                parts.append(self.order_term(name, descending))
        if not has_id:
            parts.append("id")
        return " ORDER BY " + ", ".join(parts)

    def order_term(self, name: str, descending: bool) -> str:
        return self.ordered_field(name) + (" DESC" if descending else "")

    def limit(self, offset: int, limit: int | None, params: list[Any]) -> str:
        for label, value in (("offset", offset), ("limit", limit)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                raise ValueError(f"{label} must be an int >= 0, not {value!r}")
        # Validated ints, written as literals: the planner then knows them (PostgreSQL's
        # generic plan for "LIMIT $n" ignores the value and may pick a whole-table plan).
        sql = ""
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if offset:
            if limit is None:
                sql += self.no_limit()
            sql += f" OFFSET {int(offset)}"
        return sql

    def no_limit(self) -> str:
        return ""


class SqliteDialect(Dialect):
    """SQLite: JSON text in ``data``, ``json_extract`` expressions, GLOB for ``Like``."""

    name = "sqlite"

    def create_table(self, table: str) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ("
            "id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "version INTEGER NOT NULL DEFAULT 1, "
            "data TEXT NOT NULL)"
        ]

    def create_index(self, table: str, field: str, *, unique: bool) -> str:
        kind = "UNIQUE INDEX" if unique else "INDEX"
        index = quote_ident(self.index_name(table, field, unique=unique))
        return f"CREATE {kind} IF NOT EXISTS {index} ON {quote_ident(table)} ({self.field(field)})"

    async def allocate_ids(self, session: Session, table: str, count: int) -> list[int]:
        # A write transaction holds the database's write lock, so nobody else can take
        # ids between this read and the insert; AUTOINCREMENT then records the highest.
        last = await session.fetchval(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = $1), 0), "
            f"coalesce((SELECT max(id) FROM {quote_ident(table)}), 0))",
            table,
        )
        return list(range(int(last) + 1, int(last) + 1 + count))

    async def insert_many(
        self, session: Session, table: str, ids: list[int], datas: list[str]
    ) -> None:
        await session.executemany(
            f"INSERT INTO {quote_ident(table)} (id, data) VALUES ($1, $2)", zip(ids, datas)
        )

    def field(self, name: str) -> str:
        return f"json_extract(data, '$.{name}')"

    def in_list(self, name: str, cond: In, params: list[Any]) -> str:
        params.append(json.dumps(list(cond.values)))
        return f"{self.field(name)} IN (SELECT value FROM json_each(${len(params)}))"

    def like(self, name: str, cond: Like, params: list[Any]) -> str:
        # SQLite's LIKE ignores ASCII case; GLOB is case-sensitive like PostgreSQL's LIKE.
        params.append(like_to_glob(cond.pattern))
        return f"{self.field(name)} GLOB ${len(params)}"

    def regex(self, name: str, n: int) -> str:
        return f"{self.field(name)} REGEXP ${n}"

    def no_limit(self) -> str:
        return " LIMIT -1"


class PostgresqlDialect(Dialect):
    """PostgreSQL: JSONB in ``data`` with a GIN index; ``COLLATE "C"`` comparisons."""

    name = "postgresql"

    def create_table(self, table: str) -> list[str]:
        t = quote_ident(table)
        return [
            f"CREATE TABLE IF NOT EXISTS {t} ("
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY "
            f"(SEQUENCE NAME {quote_ident(derived_name(table, 'id_seq'))}), "
            "version BIGINT NOT NULL DEFAULT 1, "
            "data JSONB NOT NULL, "
            f"CONSTRAINT {quote_ident(derived_name(table, 'pkey'))} PRIMARY KEY (id))",
            f"CREATE INDEX IF NOT EXISTS {quote_ident(derived_name(table, 'gin'))} "
            f"ON {t} USING GIN (data jsonb_path_ops) WITH (fastupdate = off)",
        ]

    def create_index(self, table: str, field: str, *, unique: bool) -> str:
        kind = "UNIQUE INDEX" if unique else "INDEX"
        index = quote_ident(self.index_name(table, field, unique=unique))
        return (
            f"CREATE {kind} IF NOT EXISTS {index} ON {quote_ident(table)} "
            f'({self.field(name=field)} COLLATE "C" NULLS FIRST)'
        )

    def json_param(self, n: int) -> str:
        return f"${n}::jsonb"

    async def allocate_ids(self, session: Session, table: str, count: int) -> list[int]:
        sequence = quote_ident(derived_name(table, "id_seq"))
        rows = await session.fetch(
            "SELECT nextval($1::regclass) AS id FROM generate_series(1, $2)", sequence, count
        )
        return sorted(int(r["id"]) for r in rows)

    async def insert_many(
        self, session: Session, table: str, ids: list[int], datas: list[str]
    ) -> None:
        await session.execute(
            f"INSERT INTO {quote_ident(table)} (id, data) "
            "SELECT * FROM unnest($1::bigint[], $2::jsonb[])",
            ids,
            datas,
        )

    def field(self, name: str) -> str:
        return f"(data->>'{name}')"

    def ordered_field(self, name: str) -> str:
        return f'({self.field(name)} COLLATE "C")'

    def conditions(self, where: Mapping[str, Condition], params: list[Any]) -> list[str]:
        # All equalities in one containment test, which the GIN index serves.
        equal: dict[str, str] = {}
        rest: dict[str, Condition] = {}
        for name, cond in where.items():
            check_field_name(name)
            if isinstance(cond, str):
                cond = Eq(cond)
            if isinstance(cond, Eq):
                equal[name] = cond.value
            else:
                rest[name] = cond
        terms: list[str] = []
        if equal:
            params.append(json.dumps(equal, ensure_ascii=False))
            terms.append(f"data @> ${len(params)}::jsonb")
            # The same test per field as well: it lets a B-tree index made by
            # create_index(field) serve it, and keeps the planner from scanning the whole
            # primary key for ORDER BY id LIMIT n when it overestimates the matches.
            for name, value in equal.items():
                params.append(value)
                terms.append(f"{self.ordered_field(name)} = ${len(params)}")
        terms.extend(self.condition(name, cond, params) for name, cond in rest.items())
        return terms

    def in_list(self, name: str, cond: In, params: list[Any]) -> str:
        params.append(list(cond.values))
        return f"{self.ordered_field(name)} = ANY(${len(params)}::text[])"

    def like(self, name: str, cond: Like, params: list[Any]) -> str:
        params.append(cond.pattern)
        return f"{self.ordered_field(name)} LIKE ${len(params)}"

    def regex(self, name: str, n: int) -> str:
        return f"{self.field(name)} ~ ${n}"

    def order_term(self, name: str, descending: bool) -> str:
        return self.ordered_field(name) + (" DESC NULLS LAST" if descending else " NULLS FIRST")


def like_to_glob(pattern: str) -> str:
    """A ``LIKE`` pattern (``%``, ``_``, ``\\`` escapes) as the equivalent SQLite GLOB."""
    out: list[str] = []
    escaped = False
    for ch in pattern:
        if escaped:
            out.append("[" + ch + "]" if ch in "*?[" else ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch in "*?[":
            out.append("[" + ch + "]")
        else:
            out.append(ch)
    return "".join(out)


DIALECTS: dict[str, Dialect] = {"sqlite": SqliteDialect(), "postgresql": PostgresqlDialect()}
