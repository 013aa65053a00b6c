"""The catalog: one async store of rows, blobs and schema on SQLite or PostgreSQL.

It keeps the client-side state a SiriDB server cannot hold, and is the storage of the
layers above (streams, aggregated streams). The htables model, asyncio throughout::

    async with SqliteDB("catalog.db") as db:          # or PostgresqlDB(dsn, schema=...)
        async with db.session() as s:
            people = s["people"]
            await people.create_table()
            row = await people.new(name="Ada", role="admin")
            await s.commit()

Modules: :mod:`.sqlite` and :mod:`.postgresql` (backends), :mod:`.database` (what they
share), :mod:`.session` (transactions, savepoints, the parameterised SQL API),
:mod:`.table` (dict rows), :mod:`.operators` (query conditions), :mod:`.dialects` (the
SQL), :mod:`.blobs` (chunked files), :mod:`.migrations` (versioned schema),
:mod:`.regex` (linear-time ``Re`` on SQLite), :mod:`.url` (``connect(url)``).
"""

from __future__ import annotations

from .blobs import DbFile
from .database import Database, Listener
from .errors import (
    CatalogBusy,
    CatalogError,
    ConflictError,
    DatabaseError,
    IntegrityError,
    MissingTable,
    MultipleRowsFound,
    NotSupportedError,
    RowNotFound,
    SessionClosedError,
    TransactionAborted,
)
from .migrations import Migration
from .names import quote_ident
from .operators import Eq, In, Like, Re, Reversed, Sql
from .postgresql import PostgresqlDB, advisory_key
from .session import Session
from .sqlite import SqliteDB
from .table import Row, Table
from .url import connect

__all__ = [
    "CatalogBusy",
    "CatalogError",
    "ConflictError",
    "Database",
    "DatabaseError",
    "DbFile",
    "Eq",
    "In",
    "IntegrityError",
    "Like",
    "Listener",
    "Migration",
    "MissingTable",
    "MultipleRowsFound",
    "NotSupportedError",
    "PostgresqlDB",
    "Re",
    "Reversed",
    "Row",
    "RowNotFound",
    "Session",
    "SessionClosedError",
    "Sql",
    "SqliteDB",
    "Table",
    "TransactionAborted",
    "advisory_key",
    "connect",
    "quote_ident",
]
