"""``$1, $2...`` placeholders: find them in SQL text and renumber them, never touching values.

Both backends take ``$n`` placeholders: asyncpg natively, and SQLite natively too (a
``$1`` is a named parameter called ``1``, so the values are bound as ``{"1": v1, ...}``;
see :func:`sqlite_bindings`). Nothing is ever formatted into SQL text. The scanner below
is only needed to combine fragments that each number their own parameters from ``$1``
(:class:`~tsconnector.catalog.operators.Sql`): it skips string literals, quoted
identifiers, comments and PostgreSQL dollar-quoted strings, so a ``$1`` inside any of
them is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_PARAM = re.compile(r"\$([0-9]+)")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$\x80-\U0010ffff]")


def _param_spans(sql: str, dialect: str) -> Iterator[tuple[int, int, int]]:
    """Yield ``(start, end, number)`` of every ``$n`` placeholder outside literals."""
    pg = dialect == "postgresql"
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "'":
            escapes = (
                pg
                and i > 0
                and sql[i - 1] in "eE"
                and not (i > 1 and _IDENT_CHAR.match(sql[i - 2]))
            )
            i = _skip_quoted(sql, i, "'", backslash=escapes)
        elif c == '"':
            i = _skip_quoted(sql, i, '"', backslash=False)
        elif c == "`" and not pg:
            i = _skip_quoted(sql, i, "`", backslash=False)
        elif c == "[" and not pg:
            end = sql.find("]", i + 1)
            i = n if end < 0 else end + 1
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i, nested=pg)
        elif c == "$":
            if i > 0 and _IDENT_CHAR.match(sql[i - 1]):
                i += 1  # part of an identifier such as a$1
                continue
            param = _PARAM.match(sql, i)
            if param:
                yield i, param.end(), int(param.group(1))
                i = param.end()
                continue
            tag = _DOLLAR_TAG.match(sql, i) if pg else None
            if tag:
                end = sql.find(tag.group(0), tag.end())
                i = n if end < 0 else end + len(tag.group(0))
            else:
                i += 1
        else:
            i += 1


def _skip_quoted(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    """Index after the quoted token starting at ``i`` (doubled quotes stay inside)."""
    n = len(sql)
    j = i + 1
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _skip_block_comment(sql: str, i: int, *, nested: bool) -> int:
    """Index after the ``/* ... */`` comment at ``i`` (PostgreSQL nests them)."""
    depth, j, n = 1, i + 2, len(sql)
    while j < n:
        if sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        elif nested and sql.startswith("/*", j):
            depth += 1
            j += 2
        else:
            j += 1
    return n


def count_params(sql: str, dialect: str) -> int:
    """The highest ``$n`` used in ``sql`` (0 when there is none)."""
    return max((number for _, _, number in _param_spans(sql, dialect)), default=0)


def renumber(sql: str, offset: int, dialect: str) -> str:
    """``sql`` with every ``$n`` placeholder replaced by ``$(n + offset)``."""
    if offset == 0:
        return sql
    out: list[str] = []
    last = 0
    for start, end, number in _param_spans(sql, dialect):
        out.append(sql[last:start])
        out.append(f"${number + offset}")
        last = end
    out.append(sql[last:])
    return "".join(out)


_KEYS = [str(i) for i in range(1, 1001)]


def sqlite_bindings(params: Sequence[Any]) -> dict[str, Any]:
    """Values for SQLite's ``$1, $2...`` named parameters: ``{"1": params[0], ...}``."""
    if len(params) <= len(_KEYS):
        return dict(zip(_KEYS, params))
    return {str(i): value for i, value in enumerate(params, 1)}
