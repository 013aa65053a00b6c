"""Errors of the catalog, the same on SQLite and PostgreSQL.

All derive from :class:`~tsconnector.exceptions.TsConnectorError` through
:class:`CatalogError`, and also from the builtin that fits (``RowNotFound`` is a
``KeyError``, ``CatalogBusy`` a ``TimeoutError``...), so either kind of ``except`` works.
Errors of the database drivers are re-raised as :class:`DatabaseError` (or a subclass),
with the driver's exception as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ..exceptions import TsConnectorError


class CatalogError(TsConnectorError):
    """Base class of every catalog error."""


class DatabaseError(CatalogError):
    """The database rejected a statement; ``sqlstate`` is PostgreSQL's code, if any."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class MissingTable(DatabaseError, RuntimeError):
    """A statement used a table that does not exist (``create_table`` was not run)."""

    def __init__(self, message: str, *, table: str | None = None, sqlstate: str | None = None):
        super().__init__(message, sqlstate=sqlstate)
        self.table = table


class IntegrityError(DatabaseError):
    """A constraint was violated: unique, not null, foreign key or check."""


class RowNotFound(CatalogError, KeyError):
    """No row (or file) has this id, or no row matched ``find_single``."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


class MultipleRowsFound(CatalogError, ValueError):
    """``find_single`` matched more than one row."""


class ConflictError(CatalogError):
    """A compare-and-swap lost a race: the row's version was not the expected one.

    ``expected`` is the version the caller assumed and ``actual`` the version found
    (``None`` when not known, e.g. for a serialization failure reported by PostgreSQL).
    """

    def __init__(
        self, message: str, *, expected: int | None = None, actual: int | None = None
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class TransactionAborted(CatalogError):
    """A statement of this transaction failed; only ``rollback()`` is allowed now.

    PostgreSQL behaves this way by itself; the catalog enforces the same rule on SQLite
    so that code tested on one backend behaves the same on the other. A failure inside
    ``async with session.savepoint():`` rolls back to the savepoint instead.
    """


class CatalogBusy(CatalogError, TimeoutError):
    """Waiting for a connection or for the database's write lock took too long."""


class SessionClosedError(CatalogError, RuntimeError):
    """The session was put back (or the database closed); it cannot run statements."""


class NotSupportedError(CatalogError):
    """The backend cannot do this (for example LISTEN on SQLite)."""


class DriverErrorMapper:
    """``with mapper:`` re-raises a driver's errors as catalog errors, the original as
    ``__cause__``; ``mapped(exc)`` gives the catalog error (None: leave it). One per
    backend, reused: entering costs nothing on the statement path."""

    __slots__ = ("_mapped",)

    def __init__(self, mapped: Callable[[Exception], BaseException | None]) -> None:
        self._mapped = mapped

    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is not None and isinstance(exc, Exception):
            mapped = self._mapped(exc)
            if mapped is not None:
                raise mapped from exc
        return False
