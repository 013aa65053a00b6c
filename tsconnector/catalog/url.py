"""``connect(url)``: a catalog database from a URL, the backend chosen by its scheme.

- ``sqlite://:memory:`` or ``sqlite:///:memory:``: ``SqliteDB(":memory:")``;
- ``sqlite:///relative/path.db``, ``sqlite:////abs/path.db``: ``SqliteDB(path)``;
- ``postgresql://user:pw@host:5432/db?schema=s&max_size=5`` (or ``postgres://``):
  ``PostgresqlDB``.

Query parameters the catalog knows (SQLite: ``busy_timeout``, ``max_size``,
``synchronous``; PostgreSQL: ``schema``, ``min_size``, ``max_size``,
``acquire_timeout``) are taken out; the others stay in the DSN for asyncpg.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .database import Database
from .postgresql import PostgresqlDB
from .sqlite import SqliteDB

_SQLITE_OPTIONS = {"busy_timeout": float, "max_size": int, "synchronous": str}
_PG_OPTIONS = {"schema": str, "min_size": int, "max_size": int, "acquire_timeout": float}


def connect(url: str, **options: Any) -> Database:
    """The database for ``url`` (not opened yet: ``await`` it or use ``async with``).

    Keyword ``options`` go to the constructor and win over the URL's parameters.
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        path, found = _sqlite_target(url)
        return SqliteDB(path, **{**found, **options})
    if scheme in ("postgresql", "postgres"):
        dsn, found = _split_options(url, _PG_OPTIONS)
        return PostgresqlDB(dsn, **{**found, **options})
    raise ValueError(f"unknown catalog URL scheme {scheme!r} (use sqlite:// or postgresql://)")


def _sqlite_target(url: str) -> tuple[str, dict[str, Any]]:
    rest = url[len("sqlite:") :]
    path, _, query = rest.partition("?")
    if path in ("//:memory:", "///:memory:", "//", "///"):
        target = ":memory:"
    elif path.startswith("///"):
        target = unquote(path[3:])  # sqlite:///rel -> rel, sqlite:////abs -> /abs
    else:
        raise ValueError(
            f"bad SQLite URL {url!r}: use sqlite:///relative.db, sqlite:////absolute.db "
            "or sqlite://:memory:"
        )
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _SQLITE_OPTIONS:
            known = sorted(_SQLITE_OPTIONS)
            raise ValueError(f"unknown SQLite URL parameter {key!r} (known: {known})")
        options[key] = _SQLITE_OPTIONS[key](value)
    return target, options


def _split_options(url: str, known: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    parts = urlsplit(url)
    kept: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in known:
            options[key] = known[key](value)
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), options
