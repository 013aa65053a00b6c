"""Catalog backends for tests: SQLite in memory, SQLite on a file, PostgreSQL.

Imported by ``conftest.py`` so every test file can use the fixtures:

- ``catalog_backend``: a :class:`Backend` per backend (parametrised), with ``new_db()``
  (another database object on the same store), ``url`` (for worker processes) and
  ``snapshot(db)`` (the schema objects, for injection tests);
- ``catalog_db``: an opened database of that backend, closed after the test;
- ``pg_backend``: the PostgreSQL backend only.

PostgreSQL is ``postgresql://postgres@127.0.0.1:5432/test`` (``TSCONNECTOR_TEST_PG``
overrides it). Each test gets its own schema ``tsc_test_<run>_<n>``, dropped afterwards.
When the server cannot be reached the PostgreSQL cases are skipped, or fail when
``CI=true``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tsconnector.catalog import Database, PostgresqlDB, SqliteDB

PG_DSN = os.environ.get("TSCONNECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
RUN_ID = secrets.token_hex(4)
_schema_numbers = itertools.count(1)
_pg_reachable: bool | None = None


def _check_postgres() -> None:
    """Skip (or fail under CI=true) when PostgreSQL is not reachable."""
    global _pg_reachable
    if _pg_reachable is None:
        # A fresh loop in a thread: the caller may be running inside an event loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            _pg_reachable = pool.submit(asyncio.run, _probe()).result()
    if not _pg_reachable:
        message = f"PostgreSQL is not reachable at {PG_DSN}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message + " (start it, or set CI=true to make this a failure)")


async def _probe() -> bool:
    try:
        import asyncpg
    except ImportError:
        return False
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


class Backend:
    """One catalog store for one test."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.dialect = "postgresql" if name == "postgresql" else "sqlite"
        self.path = tmp_path / "catalog.db"
        self.schema = f"tsc_test_{RUN_ID}_{next(_schema_numbers)}"
        self.opened: list[Database] = []

    @property
    def shareable(self) -> bool:
        """True when other database objects (and processes) can open the same store."""
        return self.name != "sqlite-memory"

    @property
    def url(self) -> str:
        if self.name == "postgresql":
            sep = "&" if "?" in PG_DSN else "?"
            return f"{PG_DSN}{sep}schema={self.schema}"
        if self.name == "sqlite-file":
            return f"sqlite:///{self.path}"
        return "sqlite://:memory:"

    def new_db(self, **options: Any) -> Database:
        """A new (unopened) database object on this store, closed after the test."""
        db: Database
        if self.name == "postgresql":
            options.setdefault("max_size", 4)
            db = PostgresqlDB(PG_DSN, schema=self.schema, **options)
        elif self.name == "sqlite-file":
            db = SqliteDB(self.path, **options)
        else:
            db = SqliteDB(":memory:", **options)
        self.opened.append(db)
        return db

    async def snapshot(self, db: Database) -> list[tuple[Any, ...]]:
        """Every table and index of the store, with its definition."""
        async with db.session(readonly=True) as s:
            if self.dialect == "sqlite":
                rows = await s.fetch(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
                )
            else:
                rows = await s.fetch(
                    "SELECT 'table' AS type, tablename AS name, '' AS def FROM pg_tables "
                    "WHERE schemaname = $1 UNION ALL "
                    "SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = $1 "
                    "UNION ALL SELECT 'sequence', sequencename, '' FROM pg_sequences "
                    "WHERE schemaname = $1 ORDER BY 1, 2",
                    self.schema,
                )
        return [tuple(r.values()) for r in rows]

    async def cleanup(self) -> None:
        for db in self.opened:
            await db.close()
        if self.name == "postgresql":
            await _drop_schema(self.schema)


BACKENDS = ["sqlite-memory", "sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextlib.asynccontextmanager
async def open_backend(name: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """The backend ``name`` (PostgreSQL skipped when down), cleaned up on exit: what each
    backend fixture yields, here and in the streams tests."""
    if name == "postgresql":
        _check_postgres()
    backend = Backend(name, tmp_path)
    try:
        yield backend
    finally:
        await backend.cleanup()


@pytest_asyncio.fixture(params=BACKENDS)
async def catalog_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each catalog backend in turn (see the module docstring)."""
    async with open_backend(request.param, tmp_path) as backend:
        yield backend


@pytest_asyncio.fixture
async def catalog_db(catalog_backend: Backend) -> Database:
    """An opened database of ``catalog_backend``."""
    return await catalog_backend.new_db().open()


@pytest_asyncio.fixture
async def pg_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    """The PostgreSQL backend alone."""
    async with open_backend("postgresql", tmp_path) as backend:
        yield backend


@pytest.fixture(scope="session", autouse=True)
def _drop_leftover_test_schemas() -> Iterator[None]:
    """Drop this run's schemas that a crashed test may have left behind."""
    yield
    if not _pg_reachable:
        return

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            names = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"tsc_test_{RUN_ID}_%"
            )
            for row in names:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{row[0]}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())
