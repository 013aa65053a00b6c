"""The abstract syntax of a query: plain dataclasses built from the parse tree.

Time and integer expressions stay unevaluated (a flat token list) because ``now`` and
date strings depend on the moment and the database's precision and time zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# -- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExprToken:
    """One token of a time or integer expression, as SiriDB writes it into its buffer.

    ``kind`` is ``num`` (the digits as written, with an optional sign), ``dur`` (a
    duration such as ``3d``), ``now``, ``date`` (a quoted date string, unquoted) or
    ``op`` (one character: ``+ - * % / ( )``).
    """

    kind: str
    value: str = ""


@dataclass(frozen=True)
class Expr:
    """An expression over integers, durations, ``now`` and date strings.

    ``time`` marks a time expression: its value must be a valid time-stamp.
    """

    tokens: tuple[ExprToken, ...]
    time: bool = True


# -- series selection ----------------------------------------------------------------------


@dataclass(frozen=True)
class MatchAll:
    """``*`` or ``all``: every series."""


@dataclass(frozen=True)
class MatchName:
    name: str


@dataclass(frozen=True)
class MatchRegex:
    """``/source/`` or ``/source/i``; ``text`` is the literal as written."""

    text: str
    source: str
    ignore_case: bool


@dataclass(frozen=True)
class MatchGroupOrTag:
    name: str


@dataclass(frozen=True)
class MatchSetOp:
    """``left <op> right`` with op one of ``| - & ^`` (``,`` and ``union`` are ``|``)."""

    op: str
    left: Match
    right: Match


Match = MatchAll | MatchName | MatchRegex | MatchGroupOrTag | MatchSetOp


# -- where clauses -------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``prop op value``; value is an :class:`Expr`, a str, or an int for a keyword
    (SiriDB's number for ``true``, ``float``, ``log``, ``read``, ``debug`` ...)."""

    prop: str
    op: str
    value: Any


@dataclass(frozen=True)
class BoolOp:
    """``left and right`` or ``left or right``; ``right`` may be missing (an ``and``
    node that holds a single operand, as SiriDB builds them)."""

    op: str  # "and" / "or"
    left: Where
    right: Where | None = None


Where = Condition | BoolOp


@dataclass(frozen=True)
class WhereTooDeep:
    """A ``where`` clause nested deeper than SiriDB accepts (an error when used)."""


WhereClause = Where | WhereTooDeep


# -- select --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FuncSpec:
    """One aggregate function as written; ``args`` are time expressions."""

    name: str
    args: tuple[Expr, ...] = ()
    limit: Expr | None = None
    inner: str | None = None
    operator: str | None = None
    operand: Any = None  # int, float, str or MatchRegex for filter()


@dataclass(frozen=True)
class Aggregate:
    """A ``=>`` chain of functions with an optional prefix and suffix."""

    functions: tuple[FuncSpec, ...]
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class Merge:
    name: str
    using: tuple[FuncSpec, ...] | None = None


@dataclass(frozen=True)
class Select:
    aggregates: tuple[Aggregate, ...]
    match: Match
    where: WhereClause | None = None
    after: Expr | None = None
    before: Expr | None = None
    head: Expr | None = None
    tail: Expr | None = None
    merge: Merge | None = None


# -- list / count / show -------------------------------------------------------------------


@dataclass(frozen=True)
class ListStmt:
    """``list <what> [columns] [match] [where] [limit]``."""

    what: str
    columns: tuple[str, ...] = ()
    match: Match | None = None
    where: WhereClause | None = None
    limit: Expr | None = None


@dataclass(frozen=True)
class CountStmt:
    """``count <what>``; what is e.g. ``series``, ``series_length``, ``servers_received_points``."""

    what: str
    match: Match | None = None
    where: WhereClause | None = None


@dataclass(frozen=True)
class Show:
    names: tuple[str, ...]


@dataclass(frozen=True)
class Calc:
    expr: Expr | None  # None: an empty query, the current time


@dataclass(frozen=True)
class Help:
    topic: tuple[str, ...]


# -- administration ------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateGroup:
    name: str
    regex: MatchRegex


@dataclass(frozen=True)
class CreateUser:
    name: str
    password: str


@dataclass(frozen=True)
class AlterDatabase:
    setting: str
    value: Any
    ignore_threshold: bool = False


@dataclass(frozen=True)
class AlterGroup:
    name: str
    new_name: str | None = None
    regex: MatchRegex | None = None


@dataclass(frozen=True)
class AlterTag:
    name: str
    new_name: str


@dataclass(frozen=True)
class AlterUser:
    name: str
    password: str | None = None
    new_name: str | None = None


@dataclass(frozen=True)
class AlterSeries:
    match: Match
    where: WhereClause | None
    tag: str
    untag: bool


@dataclass(frozen=True)
class AlterServer:
    """``alter server <uuid> set ...`` or ``alter servers [where] set log_level ...``."""

    uuid: str | None
    setting: str
    value: Any
    where: WhereClause | None = None
    raw_ident: str = ""  # the server as written (for "Cannot find server: ...")


@dataclass(frozen=True)
class DropGroup:
    name: str


@dataclass(frozen=True)
class DropTag:
    name: str


@dataclass(frozen=True)
class DropSeries:
    match: Match | None
    where: WhereClause | None
    ignore_threshold: bool


@dataclass(frozen=True)
class DropShards:
    where: WhereClause | None
    ignore_threshold: bool


@dataclass(frozen=True)
class DropServer:
    uuid: str
    raw_ident: str = ""


@dataclass(frozen=True)
class DropUser:
    name: str


@dataclass(frozen=True)
class Grant:
    access: tuple[str, ...]
    user: str
    password: str | None = None


@dataclass(frozen=True)
class Revoke:
    access: tuple[str, ...]
    user: str


Statement = (
    Select | ListStmt | CountStmt | Show | Calc | Help | CreateGroup | CreateUser
    | AlterDatabase | AlterGroup | AlterTag | AlterUser | AlterSeries | AlterServer
    | DropGroup | DropTag | DropSeries | DropShards | DropServer | DropUser | Grant | Revoke
)


@dataclass(frozen=True)
class Query:
    """A whole query: an optional ``timeit``, one statement, and every expression in
    the order SiriDB evaluates them (all of them, before anything else happens)."""

    statement: Statement
    timeit: bool = False
    exprs: tuple[Expr, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
