"""Series matching (names, regexes, groups, tags, set operators) and ``where`` filters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tsconnector.server.model import Database, Series, imap_walk_key
from tsconnector.server.query import syntax as s
from tsconnector.server.query.errors import QueryFailure
from tsconnector.server.query.timeexpr import TimeContext, evaluate
from tsconnector.server.regex import RegexError, SiriRegex


def compile_regex(regex: s.MatchRegex) -> SiriRegex:
    """Compile a query regex as the real server does (``^body$``, matched in bounded
    time); a pattern that does not compile is SiriDB's error."""
    try:
        return SiriRegex(regex.source, regex.ignore_case)
    except RegexError as exc:
        raise QueryFailure(str(exc)) from exc


def group_source(regex: s.MatchRegex) -> tuple[str, int]:
    """Check a group's expression (SiriDB's compile error if it has one)."""
    compile_regex(regex)
    return regex.source, 1 if regex.ignore_case else 0


# -- matching ------------------------------------------------------------------------------

def _names(match: s.Match, db: Database) -> set[str]:
    if isinstance(match, s.MatchAll):
        return set(db.series)
    if isinstance(match, s.MatchName):
        return {match.name} if match.name in db.series else set()
    if isinstance(match, s.MatchRegex):
        pattern = compile_regex(match)
        return {name for name in db.series if pattern.matches(name)}
    if isinstance(match, s.MatchGroupOrTag):
        if match.name in db.groups:
            return {series.name for series in db.group_members(match.name)}
        if match.name in db.tags:
            return set(db.tags[match.name].series) & set(db.series)
        raise QueryFailure(f"Cannot find group or tag '{match.name}'")
    left = _names(match.left, db)
    right = _names(match.right, db)
    if match.op == "|":
        return left | right
    if match.op == "-":
        return left - right
    if match.op == "&":
        return left & right
    return left ^ right


#: Series types as SiriDB numbers them (``where type == float`` compares these).
SERIES_TYPES = {"integer": 0, "float": 1, "string": 2}

#: The error of a ``where`` clause nested too deeply.
WHERE_TOO_DEEP = "Max depth reached in 'where' expression!"


def series_row(series: Series, db: Database) -> dict[str, Any]:
    """The properties of a series that ``where`` and ``list series`` can use."""
    return {
        "name": series.name,
        "type": SERIES_TYPES[series.tp],
        "length": series.length,
        "start": series.start,
        "end": series.end,
        "pool": 0,
        "shard_duration": db.shard_duration(series),
    }


def select_series(
    db: Database,
    match: s.Match | None,
    where: s.WhereClause | None,
    ctx: TimeContext,
) -> list[Series]:
    """Series matching ``match`` and ``where``, in the server's list order."""
    if type(match) is s.MatchName and where is None:
        one = db.series.get(match.name)
        return [] if one is None else [one]
    if match is not None and not isinstance(match, s.MatchAll):
        wanted = _names(match, db)
        if len(wanted) * 8 < len(db.series):
            # A few named series: look them up instead of scanning every series.
            found = [x for x in map(db.series.get, wanted) if x is not None]
            ordered = sorted(found, key=lambda x: imap_walk_key(x.sid))
        else:
            ordered = [series for series in db.ordered_series() if series.name in wanted]
    else:
        ordered = db.ordered_series()
    if isinstance(where, s.WhereTooDeep):
        raise QueryFailure(WHERE_TOO_DEEP)
    if where is not None:
        ordered = [x for x in ordered if matches(where, series_row(x, db), ctx)]
    return ordered


# -- where ---------------------------------------------------------------------------------

def compare(left: Any, op: str, right: Any) -> bool:
    """A ``where`` condition as SiriDB tests it: integers as int64, strings byte-wise
    (``~`` and ``!~``: whether ``right`` occurs in ``left``)."""
    if isinstance(left, str) or isinstance(right, str):
        a: Any = str(left)
        b: Any = str(right)
        if op == "~":
            return b in a
        if op == "!~":
            return b not in a
    elif op in ("~", "!~"):  # pragma: no cover - the grammar allows these for strings only
        return False
    else:
        a, b = int(left or 0), int(right)
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == ">":
        return bool(a > b)
    if op == "<=":
        return bool(a <= b)
    return bool(a >= b)


ValueResolver = Callable[[str, Any], Any]


def matches(
    where: s.WhereClause,
    row: Mapping[str, Any],
    ctx: TimeContext,
    resolve: ValueResolver | None = None,
) -> bool:
    """Whether ``row`` satisfies ``where``; ``resolve`` may translate keyword operands."""
    if isinstance(where, s.BoolOp):
        left = matches(where.left, row, ctx, resolve)
        if where.op == "and":
            return left and (where.right is None or matches(where.right, row, ctx, resolve))
        assert where.right is not None
        return left or matches(where.right, row, ctx, resolve)
    if isinstance(where, s.WhereTooDeep):  # pragma: no cover - refused before filtering
        raise QueryFailure(WHERE_TOO_DEEP)
    value = where.value
    if isinstance(value, s.Expr):
        value = evaluate(value, ctx)
    elif resolve is not None:
        value = resolve(where.prop, value)
    return compare(row.get(where.prop), where.op, value)


def filter_rows(
    rows: Iterable[Mapping[str, Any]],
    where: s.WhereClause | None,
    ctx: TimeContext,
    resolve: ValueResolver | None = None,
) -> list[Mapping[str, Any]]:
    """The rows that satisfy ``where`` (all rows without one)."""
    if where is None:
        return list(rows)
    if isinstance(where, s.WhereTooDeep):
        raise QueryFailure(WHERE_TOO_DEEP)
    return [row for row in rows if matches(where, row, ctx, resolve)]
