"""The streams' rows in the catalog: schema, lookups, atomic updates and the SQL view.

One table, ``tsconnector_streams`` (uuid, collection, the four tags, annotations as a
JSON object of encoded strings, property_version, series), and the read-only view
``streams`` over it with BTrDB's columns. Created by the ``streams`` component's
migrations in ``tsconnector_schema``. Every statement is parameterised.

``query`` runs user SQL in three layers: :func:`~.sqlguard.check_select` on the text,
then a read-only transaction (PostgreSQL ``READ ONLY``, SQLite ``PRAGMA query_only``),
and the database's own access control -- on PostgreSQL the role
``tsconnector_streams_reader``, which may read the view and nothing else (when the
catalog user may create it), and on SQLite an authorizer that allows reading the view
alone.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import uuid as _uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConflictError, StreamExists, StreamNotFoundError, StreamsError
from .meta import TAG_KEYS, StreamRow
from .sqlguard import VIEW, check_select

if TYPE_CHECKING:
    from ..catalog import Database, Session

__all__ = ["COMPONENT", "READER_ROLE", "TABLE", "StreamStore"]

COMPONENT = "streams"
TABLE = "tsconnector_streams"
READER_ROLE = "tsconnector_streams_reader"
_COLUMNS = "uuid, collection, name, unit, ingress, distiller, annotations, property_version, series"
_VIEW_COLUMNS = (
    "uuid, collection, name, unit, ingress, distiller, property_version, annotations, series"
)
_UPDATE_RETRIES = 20
_QUERY_TIMEOUT_MS = 30_000

_SQLITE_SCHEMA = f"""
CREATE TABLE {TABLE} (
    uuid TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    ingress TEXT NOT NULL DEFAULT '',
    distiller TEXT NOT NULL DEFAULT '',
    annotations TEXT NOT NULL DEFAULT '{{}}',
    property_version INTEGER NOT NULL DEFAULT 1,
    series TEXT NOT NULL UNIQUE);
CREATE INDEX {TABLE}__collection_name ON {TABLE} (collection, name);
CREATE VIEW {VIEW} AS SELECT {_VIEW_COLUMNS} FROM {TABLE};
"""

_PG_SCHEMA = f"""
CREATE TABLE {TABLE} (
    uuid UUID PRIMARY KEY,
    collection TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    ingress TEXT NOT NULL DEFAULT '',
    distiller TEXT NOT NULL DEFAULT '',
    annotations JSONB NOT NULL DEFAULT '{{}}'::jsonb,
    property_version BIGINT NOT NULL DEFAULT 1,
    series TEXT NOT NULL UNIQUE);
CREATE INDEX {TABLE}__collection_name ON {TABLE} (collection, name);
CREATE INDEX {TABLE}__annotations ON {TABLE} USING GIN (annotations jsonb_path_ops);
CREATE VIEW {VIEW} AS SELECT {_VIEW_COLUMNS} FROM {TABLE};
DO $do$
BEGIN
    BEGIN
        CREATE ROLE {READER_ROLE} NOLOGIN;
    EXCEPTION WHEN OTHERS THEN NULL;  -- exists already, or no CREATEROLE privilege
    END;
    BEGIN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO {READER_ROLE}', current_schema());
        GRANT SELECT ON {VIEW} TO {READER_ROLE};
        EXECUTE format('GRANT {READER_ROLE} TO %I', current_user);
    EXCEPTION WHEN OTHERS THEN NULL;  -- then query() relies on its other two layers
    END;
END
$do$;
"""


def _migrations() -> tuple[Any, ...]:
    from ..catalog import Migration

    return (
        Migration(
            1,
            sqlite=_SQLITE_SCHEMA,
            postgresql=_PG_SCHEMA,
            description="streams: tsconnector_streams and the read-only view streams",
        ),
    )


def _prefix_bound(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (code point order)."""
    chars = prefix.rstrip("\U0010ffff")
    if not chars:
        return None
    last = ord(chars[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:  # skip the surrogates, which UTF-8 cannot hold
        last = 0xE000
    return chars[:-1] + chr(last)


class _Where:
    """A WHERE clause under construction, with its parameters numbered from ``$1``."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def prefix(self, column: str, prefix: str) -> str:
        """``column`` starts with ``prefix``: a range the (column's) index serves."""
        if not prefix:
            return "TRUE"
        bound = _prefix_bound(prefix)
        low = f"{column} >= {self.param(prefix)}"
        return low if bound is None else f"({low} AND {column} < {self.param(bound)})"

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.parts) if self.parts else ""


class StreamStore:
    """Rows of streams in a catalog database (SQLite or PostgreSQL)."""

    def __init__(self, catalog: Database) -> None:
        self.catalog = catalog
        self._ready = False
        self._reader_role: bool | None = None

    @property
    def pg(self) -> bool:
        """True on PostgreSQL."""
        return self.catalog.dialect == "postgresql"

    async def setup(self) -> None:
        """Create or migrate the table and the view (idempotent, safe across processes)."""
        if not self._ready:
            await self.catalog.migrate(COMPONENT, _migrations())
            self._ready = True

    # -- conversion -------------------------------------------------------------------
    def _uuid_param(self, uuid: _uuid.UUID) -> Any:
        return uuid if self.pg else str(uuid)

    def _json_param(self, value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def _uuid_list(self, where: _Where, column: str, values: Sequence[Any]) -> str:
        """``column`` in ``values``: one array / JSON parameter, however many values."""
        if self.pg:
            cast = "::uuid[]" if column == "uuid" else "::text[]"
            return f"{column} = ANY({where.param(list(values))}{cast})"
        param = where.param(self._json_param(list(values)))
        return f"{column} IN (SELECT value FROM json_each({param}))"

    @staticmethod
    def _row(record: Mapping[str, Any]) -> StreamRow:
        raw = record["uuid"]
        annotations = record["annotations"]
        if isinstance(annotations, str):
            annotations = json.loads(annotations)
        return StreamRow(
            uuid=raw if isinstance(raw, _uuid.UUID) else _uuid.UUID(str(raw)),
            collection=record["collection"],
            series=record["series"],
            property_version=int(record["property_version"]),
            tags={key: record[key] for key in TAG_KEYS},
            annotations=dict(annotations),
        )

    def _values(self, row: StreamRow) -> list[Any]:
        annotations = self._json_param(dict(row.annotations))
        return [
            self._uuid_param(row.uuid),
            row.collection,
            *(row.tags.get(key, "") for key in TAG_KEYS),
            annotations,
            row.property_version,
            row.series,
        ]

    def _select(self, where: _Where, order: bool = True) -> str:
        tail = " ORDER BY collection, name, uuid" if order else ""
        return f"SELECT {_COLUMNS} FROM {TABLE}{where.sql()}{tail}"

    async def _fetch_rows(self, where: _Where) -> list[StreamRow]:
        await self.setup()
        async with self.catalog.session(readonly=True) as s:
            records = await s.fetch(self._select(where), *where.params)
        return [self._row(r) for r in records]

    # -- writes -----------------------------------------------------------------------
    async def insert(self, rows: Sequence[StreamRow]) -> None:
        """Insert rows in one transaction; ``StreamExists`` if a UUID (or series) is taken."""
        from ..catalog import IntegrityError

        await self.setup()
        cast = "::jsonb" if self.pg else ""
        sql = (
            f"INSERT INTO {TABLE} ({_COLUMNS}) "
            f"VALUES ($1, $2, $3, $4, $5, $6, $7{cast}, $8, $9)"
        )
        async with self.catalog.session() as s:
            try:
                await s.executemany(sql, [self._values(row) for row in rows])
            except IntegrityError:
                await s.rollback()
                raise await self._taken(s, rows) from None
            await s.commit()

    async def _taken(self, s: Session, rows: Sequence[StreamRow]) -> StreamsError:
        where = _Where()
        where.parts.append(self._uuid_list(where, "uuid", [self._uuid_param(r.uuid) for r in rows]))
        found = await s.fetch(f"SELECT uuid FROM {TABLE}{where.sql()}", *where.params)
        if found:
            return StreamExists(f"a stream with UUID {found[0]['uuid']} exists already")
        where = _Where()
        where.parts.append(self._uuid_list(where, "series", [r.series for r in rows]))
        found = await s.fetch(f"SELECT uuid, series FROM {TABLE}{where.sql()}", *where.params)
        if found:
            return StreamExists(
                f"series {found[0]['series']!r} belongs to stream {found[0]['uuid']} already"
            )
        return StreamExists("a stream in this batch exists already")

    async def update(
        self,
        uuid: _uuid.UUID,
        change: Callable[[StreamRow], StreamRow],
        expected_version: int | None,
    ) -> StreamRow:
        """Apply ``change`` to the stream's row in one transaction, compare-and-swap on
        its property version; see ``Stream.update``."""
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise TypeError("expected_version must be an int")
        await self.setup()
        cast = "::jsonb" if self.pg else ""
        sql = (
            f"UPDATE {TABLE} SET collection = $1, name = $2, unit = $3, ingress = $4, "
            f"distiller = $5, annotations = $6{cast}, property_version = $7 "
            f"WHERE uuid = $8 AND property_version = $9"
        )
        for _ in range(_UPDATE_RETRIES):
            async with self.catalog.session() as s:
                where = _Where()
                where.parts.append(f"uuid = {where.param(self._uuid_param(uuid))}")
                record = await s.fetchrow(self._select(where, order=False), *where.params)
                if record is None:
                    raise StreamNotFoundError(f"stream {uuid} does not exist")
                current = self._row(record)
                if expected_version is not None and current.property_version != expected_version:
                    raise self._conflict(uuid, expected_version, current.property_version)
                new = change(current)
                changed = await s.execute(
                    sql,
                    new.collection,
                    *(new.tags.get(key, "") for key in TAG_KEYS),
                    self._json_param(dict(new.annotations)),
                    new.property_version,
                    self._uuid_param(uuid),
                    current.property_version,
                )
                if changed == 1:
                    await s.commit()
                    return new
                await s.rollback()
                if expected_version is not None:
                    latest = await s.fetchval(
                        f"SELECT property_version FROM {TABLE} WHERE uuid = $1",
                        self._uuid_param(uuid),
                    )
                    if latest is None:
                        raise StreamNotFoundError(f"stream {uuid} does not exist")
                    raise self._conflict(uuid, expected_version, int(latest))
        raise StreamsError(f"stream {uuid}: {_UPDATE_RETRIES} concurrent updates in a row won")

    @staticmethod
    def _conflict(uuid: _uuid.UUID, expected: int, current: int) -> ConflictError:
        return ConflictError(
            f"stream {uuid} is at property version {current}, not {expected}",
            expected_version=expected,
            current_version=current,
        )

    async def delete(self, uuid: _uuid.UUID) -> bool:
        """Delete a stream's row; False if there was none."""
        await self.setup()
        async with self.catalog.session() as s:
            n = await s.execute(f"DELETE FROM {TABLE} WHERE uuid = $1", self._uuid_param(uuid))
            await s.commit()
        return n > 0

    # -- lookups ----------------------------------------------------------------------
    async def get(self, uuids: Sequence[_uuid.UUID]) -> dict[_uuid.UUID, StreamRow]:
        """Rows by UUID (absent UUIDs are left out); one query."""
        if not uuids:
            return {}
        where = _Where()
        where.parts.append(self._uuid_list(where, "uuid", [self._uuid_param(u) for u in uuids]))
        return {row.uuid: row for row in await self._fetch_rows(where)}

    async def by_series(self, names: Sequence[str]) -> dict[str, StreamRow]:
        """Rows by series name."""
        if not names:
            return {}
        where = _Where()
        where.parts.append(self._uuid_list(where, "series", list(names)))
        return {row.series: row for row in await self._fetch_rows(where)}

    async def find_names(
        self, pairs: Sequence[tuple[str, str]], *, prefix: bool
    ) -> dict[tuple[str, str], list[StreamRow]]:
        """Rows per ``(collection, name)`` (the collection a prefix if ``prefix``)."""
        where = _Where()
        terms = []
        for collection, name in pairs:
            coll = where.prefix("collection", collection) if prefix else (
                f"collection = {where.param(collection)}"
            )
            terms.append(f"({coll} AND name = {where.param(name)})")
        where.parts.append("(" + " OR ".join(terms) + ")")
        rows = await self._fetch_rows(where)
        out: dict[tuple[str, str], list[StreamRow]] = {}
        for collection, name in pairs:
            out[(collection, name)] = [
                r
                for r in rows
                if r.name == name
                and (r.collection.startswith(collection) if prefix else r.collection == collection)
            ]
        return out

    async def find(
        self,
        collections: Sequence[str] | None,
        *,
        prefix: bool,
        tags: Mapping[str, str],
        annotations: Mapping[str, str | None],
    ) -> list[StreamRow]:
        """Rows in the collections whose tags equal ``tags`` and whose (encoded)
        annotations equal ``annotations`` (``None``: the key is there)."""
        where = _Where()
        if collections:
            terms = [
                where.prefix("collection", c) if prefix else f"collection = {where.param(c)}"
                for c in collections
            ]
            where.parts.append("(" + " OR ".join(terms) + ")")
        for key, value in tags.items():
            where.parts.append(f"{key} = {where.param(value)}")
        for key, text in annotations.items():
            where.parts.append(self._annotation_term(where, key, text))
        return await self._fetch_rows(where)

    def _annotation_term(self, where: _Where, key: str, text: str | None) -> str:
        if self.pg:
            if text is None:
                return f"annotations ? {where.param(key)}"
            return f"annotations @> {where.param(self._json_param({key: text}))}::jsonb"
        condition = f"key = {where.param(key)}"
        if text is not None:
            condition += f" AND value = {where.param(text)}"
        return f"EXISTS (SELECT 1 FROM json_each({TABLE}.annotations) WHERE {condition})"

    async def _strings(self, sql: str, params: Sequence[Any]) -> list[str]:
        await self.setup()
        async with self.catalog.session(readonly=True) as s:
            records = await s.fetch(sql, *params)
        return [str(next(iter(r.values()))) for r in records]

    async def collections(self, starts_with: str) -> list[str]:
        """Distinct collections starting with ``starts_with``, sorted."""
        where = _Where()
        where.parts.append(where.prefix("collection", starts_with))
        return await self._strings(
            f"SELECT DISTINCT collection FROM {TABLE}{where.sql()} ORDER BY collection",
            where.params,
        )

    async def distinct(self, column: str, prefix: str) -> list[str]:
        """Distinct names or units (non-empty) under a collection prefix, sorted."""
        if column not in ("name", "unit"):
            raise ValueError(column)
        where = _Where()
        where.parts.append(where.prefix("collection", prefix))
        where.parts.append(f"{column} <> ''")
        return await self._strings(
            f"SELECT DISTINCT {column} FROM {TABLE}{where.sql()} ORDER BY {column}",
            where.params,
        )

    def _keys_source(self) -> str:
        if self.pg:
            return f"{TABLE}, jsonb_object_keys({TABLE}.annotations) AS k(key)"
        return f"{TABLE}, json_each({TABLE}.annotations) AS k"

    async def annotation_keys(self, prefix: str) -> list[str]:
        """Distinct annotation keys under a collection prefix, sorted."""
        where = _Where()
        where.parts.append(where.prefix("collection", prefix))
        return await self._strings(
            f"SELECT DISTINCT k.key FROM {self._keys_source()}{where.sql()} ORDER BY k.key",
            where.params,
        )

    async def key_counts(self, prefix: str) -> tuple[dict[str, int], dict[str, int]]:
        """Streams with each tag set and with each annotation key, under the prefix."""
        await self.setup()
        where = _Where()
        where.parts.append(where.prefix("collection", prefix))
        sums = ", ".join(f"SUM(CASE WHEN {k} <> '' THEN 1 ELSE 0 END) AS {k}" for k in TAG_KEYS)
        async with self.catalog.session(readonly=True) as s:
            tag_row = await s.fetchrow(f"SELECT {sums} FROM {TABLE}{where.sql()}", *where.params)
            ann_rows = await s.fetch(
                f"SELECT k.key AS key, COUNT(*) AS n FROM {self._keys_source()}{where.sql()} "
                "GROUP BY k.key ORDER BY k.key",
                *where.params,
            )
        tags = {k: int((tag_row or {}).get(k) or 0) for k in TAG_KEYS}
        return tags, {str(r["key"]): int(r["n"]) for r in ann_rows}

    # -- read-only SQL ----------------------------------------------------------------
    async def query(self, stmt: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        """Run a read-only statement over the ``streams`` view (see the module docstring)."""
        check_select(stmt, self.catalog.dialect)
        await self.setup()
        async with self.catalog.session(readonly=True) as s:
            if self.pg:
                await s.execute(f"SET LOCAL statement_timeout = {_QUERY_TIMEOUT_MS}")
                if await self._has_reader_role(s):
                    await s.execute(f"SET LOCAL ROLE {READER_ROLE}")
                records = await s.fetch(stmt, *params)
            else:
                records = await self._sqlite_query(s, stmt, params)
        return [_plain(r) for r in records]

    async def _has_reader_role(self, s: Session) -> bool:
        if self._reader_role is None:
            found = await s.fetchval(
                "SELECT pg_has_role(current_user, oid, 'MEMBER') "
                "AND has_table_privilege(oid, $2, 'SELECT') FROM pg_roles WHERE rolname = $1",
                READER_ROLE,
                VIEW,
            )
            self._reader_role = bool(found)
        return self._reader_role

    async def _sqlite_query(
        self, s: Session, stmt: str, params: Sequence[Any]
    ) -> list[dict[str, Any]]:
        await s.fetchval("SELECT 1")  # begin the read-only transaction before restricting
        raw = getattr(getattr(s, "_conn", None), "raw", None)
        if raw is None or not hasattr(raw, "set_authorizer"):
            raise StreamsError("the SQLite catalog gives no access to its connection")
        await raw.set_authorizer(_sqlite_authorizer)
        try:
            return await s.fetch(stmt, *params)
        finally:
            await raw.set_authorizer(_AUTHORIZER_OFF)


def _allow_everything(*_args: Any) -> int:
    """An authorizer that allows every action: Python 3.10 cannot remove one."""
    return sqlite3.SQLITE_OK


# Python 3.10's ``set_authorizer(None)`` installs None as the callback, and SQLite then
# denies every later statement on that pooled connection; 3.11 added None to remove it.
_AUTHORIZER_OFF: Any = None if sys.version_info >= (3, 11) else _allow_everything


def _sqlite_authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: Any, source: str | None
) -> int:
    """Allow SELECT over the ``streams`` view and nothing else (see the module docstring)."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if arg2 in ("load_extension", "readfile", "writefile") else (
            sqlite3.SQLITE_OK
        )
    if action == sqlite3.SQLITE_READ:
        if arg1 == VIEW or source == VIEW or arg1 in ("json_each", "json_tree"):
            return sqlite3.SQLITE_OK
        if arg1 == TABLE and arg2 == "":  # count(*) over the view reads no column
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master" and source is None:
        return sqlite3.SQLITE_OK  # json_each declares its virtual table this way
    return sqlite3.SQLITE_DENY


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    """A result row as JSON-like values: UUIDs as text, the annotations object decoded."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, _uuid.UUID):
            value = str(value)
        elif key == "annotations" and isinstance(value, str) and value.startswith("{"):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out
