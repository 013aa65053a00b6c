"""Evaluate ``select``: read points, run function chains, merge, apply the points limit.

The steps and the order of their errors are SiriDB's: first the series selection, the
``where`` depth and the ``merge ... using`` functions; then the time range or
``head``/``tail``; then each selection *from the last to the first*, each checking its
prefix and suffix, building its functions (only when series were selected) and reading
series after series while the points limit allows; finally the merge and the answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np

from tsconnector.server.model import Database, Series
from tsconnector.server.query import syntax as s
from tsconnector.server.query.answer import LARGE_ANSWER_POINTS, PointColumns
from tsconnector.server.query.errors import QueryFailure
from tsconnector.server.query.functions import (
    ARRAY_AGGREGATES,
    FunctionCall,
    FunctionError,
    apply_function,
    compile_filter_regex,
    fast_first_string,
    fast_last_string,
    merge_series,
)
from tsconnector.server.query.precision import query_factor, scale_calc, scale_timestamp
from tsconnector.server.query.selection import WHERE_TOO_DEEP, matches, select_series, series_row
from tsconnector.server.query.timeexpr import TimeContext, evaluate, evaluate_time

__all__ = [
    "MULTIPLE_METHODS",
    "POINTS_LIMIT",
    "SelectPlan",
    "build_calls",
    "calc_answer",
    "convert_ts",
    "plan_select",
    "run_select",
    "run_single",
]

MULTIPLE_METHODS = (
    "When using multiple select methods, add a prefix and/or suffix to the selection "
    "to make them unique."
)
POINTS_LIMIT = (
    "Query has reached the maximum number of selected points ({}). Please use another "
    "time window, an aggregation function or select less series to reduce the number "
    "of points."
)
MERGE_NAME = (
    "Error while merging points. Make sure the destination series name is valid."
)
OFFSET_FIRST = "Offset must be used after an aggregation method."
ADD_POINTS = "Error adding points to map."
#: ``head`` and ``tail`` take at most this many points.
MAX_HEADTAIL = 1_000_000

Points = tuple[list[int], list[Any], str]
#: ``(start, end, head, tail)`` of a select; None where not given.
Bounds = tuple[int | None, int | None, int | None, int | None]
_NO_BOUNDS: Bounds = (None, None, None, None)


def convert_ts(ts: int, db_precision: int, precision: int | None) -> int:
    """A point's time-stamp as answered to a query asking for ``precision``."""
    return scale_timestamp(ts, query_factor(precision, db_precision))


def calc_answer(value: int, db_precision: int, precision: int | None) -> int:
    """A ``calc`` answer (or the time of an empty query) for ``precision``."""
    return scale_calc(value, query_factor(precision, db_precision))


def build_calls(specs: Sequence[s.FuncSpec], ctx: TimeContext) -> list[FunctionCall]:
    """A ``=>`` chain as function calls, with SiriDB's checks in chain order.

    ``offset(x)`` moves the window of the function before it by ``x`` modulo the
    window; it must follow a function with a window.
    """
    calls: list[FunctionCall] = []
    for spec in specs:
        args = [evaluate(a, ctx) for a in spec.args]
        if spec.name == "offset":
            if not calls or not calls[-1].window:
                raise QueryFailure(OFFSET_FIRST)
            previous = calls[-1]
            assert previous.window is not None
            calls[-1] = dataclasses.replace(previous, offset=args[0] % previous.window)
            continue
        if spec.name == "limit":
            call = FunctionCall(
                "limit", limit=evaluate(spec.limit, ctx) if spec.limit else None,
                inner=spec.inner)
        elif spec.name == "filter":
            operand = spec.operand
            if isinstance(operand, s.MatchRegex):
                _check_filter_regex(spec.operator)
                try:
                    operand = compile_filter_regex(operand.text)
                except FunctionError as exc:
                    raise QueryFailure(str(exc)) from exc
            call = FunctionCall("filter", operator=spec.operator, operand=operand)
        elif spec.name == "derivative":
            call = FunctionCall(
                "derivative",
                interval=args[0] if args else None,
                window=args[1] if len(args) > 1 else None,
            )
        else:
            call = FunctionCall(spec.name, window=args[0] if args else None)
        _validate(call)
        calls.append(call)
    return calls


def _check_filter_regex(operator: str | None) -> None:
    if operator not in (None, "==", "!="):
        raise QueryFailure(
            "Regular expressions can only be used with 'equal' (==) "
            "or 'not equal' (!=) operator.")


def _validate(call: FunctionCall) -> None:
    """The argument checks SiriDB does while building a function."""
    try:
        apply_function(call, [], [], "integer")
    except FunctionError as exc:
        raise QueryFailure(str(exc)) from exc


def run_chain(calls: Sequence[FunctionCall], points: Points) -> Points:
    ts, values, tp = points
    try:
        for call in calls:
            if len(ts) == 0:
                break
            ts, values, tp = apply_function(call, ts, values, tp)
    except FunctionError as exc:
        raise QueryFailure(str(exc)) from exc
    return ts, values, tp


def _string_chunk_answer(
    series: Series, calls: Sequence[FunctionCall]
) -> tuple[Points, list[FunctionCall]] | None:
    """``first()`` / ``last()`` over a whole string series read one stored chunk.

    The real server then reads only the chunk holding the first (last) point, with a
    reading quirk for chunks of five or more strings; the rest of the chain runs after.
    """
    if not calls or calls[0].name not in ("first", "last") or calls[0].window is not None:
        return None
    chunks = series.log_chunks
    if series.tp != "string" or not chunks or sum(chunks) != len(series.ts):
        return None
    if calls[0].name == "first":
        size = chunks[0]
        t, v = fast_first_string(
            series.ts[:size], cast("list[str]", series.values[:size]), series.ts[0])
    else:
        size = chunks[-1]
        t, v = fast_last_string(
            series.ts[-size:], cast("list[str]", series.values[-size:]), series.ts[-1])
    return ([t], [v], "string"), list(calls[1:])


def _names_only(match: s.Match) -> bool:
    """Whether a selection is made of series names only (the server then skips its
    final points-limit check, which it does after asking every pool)."""
    if isinstance(match, s.MatchName):
        return True
    if isinstance(match, s.MatchSetOp):
        return _names_only(match.left) and _names_only(match.right)
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class SelectPlan:
    """What a select needs that depends only on its text, the precision and the zone.

    Built once per query text (see :func:`plan_select`) for the common case of one
    named series through one chain without ``where`` or ``merge``; ``bounds`` is
    None when the time range or ``head``/``tail`` use ``now`` (or are invalid).
    """

    chains: tuple[tuple[FunctionCall, ...], ...]
    merge_calls: tuple[FunctionCall, ...] | None
    bounds: Bounds | None
    #: The name when the select reads one named series through one chain, without
    #: ``where`` or ``merge`` (answered by :func:`run_single`).
    single: str | None = None


def _uses_now(expr: s.Expr | None) -> bool:
    return expr is not None and any(tok.kind == "now" for tok in expr.tokens)


def _chain_uses_now(specs: Sequence[s.FuncSpec]) -> bool:
    return any(_uses_now(spec.limit) or any(map(_uses_now, spec.args)) for spec in specs)


def plan_select(stmt: s.Select, precision: int, tz: str) -> SelectPlan | None:
    """The reusable part of ``stmt``; None when the select is not a plain read of one
    named series, or its chain uses ``now`` or fails to build (those run in full)."""
    if (
        len(stmt.aggregates) != 1
        or stmt.where is not None
        or stmt.merge is not None
        or not isinstance(stmt.match, s.MatchName)
        or _chain_uses_now(stmt.aggregates[0].functions)
    ):
        return None
    ctx = TimeContext(precision, tz, 0)
    try:
        chain = build_calls(stmt.aggregates[0].functions, ctx)
    except QueryFailure:
        return None
    bounds = None
    if not any(map(_uses_now, (stmt.after, stmt.before, stmt.head, stmt.tail))):
        try:
            bounds = _bounds(stmt, ctx)
        except QueryFailure:
            bounds = None
    return SelectPlan((tuple(chain),), None, bounds, stmt.match.name)


def _bounds(stmt: s.Select, ctx: TimeContext) -> Bounds:
    """``(start, end, head, tail)`` of a select with SiriDB's checks of them."""
    start = evaluate_time(stmt.after, ctx) if stmt.after is not None else None
    end = evaluate_time(stmt.before, ctx) if stmt.before is not None else None
    if start is not None and end is not None and start > end:
        raise QueryFailure(
            f"Start time ({start}) should not be greater than end time ({end})")
    head = tail = None
    if stmt.head is not None:
        head = evaluate(stmt.head, ctx)
        if not 0 < head <= MAX_HEADTAIL:
            raise QueryFailure(f"Head must be a value between 1 and {MAX_HEADTAIL}, got {head}")
    if stmt.tail is not None:
        tail = evaluate(stmt.tail, ctx)
        if not 0 < tail <= MAX_HEADTAIL:
            raise QueryFailure(f"Tail must be a value between 1 and {MAX_HEADTAIL}, got {tail}")
    return start, end, head, tail


def _whole_head(call: FunctionCall, series: Series) -> Points | None:
    """``first()``, ``last()`` or ``count()`` of a whole (non-empty) series, read without
    copying its points; None for any other function."""
    if call.window is not None or not series.ts:
        return None
    name = call.name
    if name == "last":
        return [series.ts[-1]], [series.values[-1]], series.tp
    if name == "first":
        return [series.ts[0]], [series.values[0]], series.tp
    if name == "count":
        return [series.ts[-1]], [len(series.ts)], "integer"
    return None


def _reads_arrays(series: Series, chain: Sequence[FunctionCall]) -> bool:
    """Whether a numeric series is read as numpy views of its points: for ``select *``
    and for a chain that starts with a windowed aggregate that takes arrays."""
    if series.tp == "string":
        return False
    if not chain:
        return True
    first = chain[0]
    return first.window is not None and first.name in ARRAY_AGGREGATES and not first.offset


def _read_arrays(series: Series, bounds: Bounds) -> tuple[Any, Any]:
    """The points of ``bounds`` as numpy views of the series' arrays."""
    ts, values = series.arrays()
    start, end, head, tail = bounds
    if head is not None:
        return ts[:head], values[:head]
    if tail is not None:
        return ts[-tail:], values[-tail:]
    lo = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
    hi = len(ts) if end is None else int(np.searchsorted(ts, end, side="left"))
    return ts[lo:hi], values[lo:hi]


def _read_points(
    series: Series,
    chain: Sequence[FunctionCall],
    bounds: Bounds,
    whole: bool,
    arrays: bool = False,
) -> Points:
    """One series through one chain, as the server reads and computes it. With
    ``arrays`` a numeric series may answer numpy arrays (``select *``) or feed them to
    its first aggregate (whose answer is lists again)."""
    if whole and chain:
        if series.tp == "string":
            quirk = _string_chunk_answer(series, chain)
            if quirk is not None:
                return run_chain(quirk[1], quirk[0])
        head_out = _whole_head(chain[0], series)
        if head_out is not None:
            return run_chain(chain[1:], head_out) if len(chain) > 1 else head_out
    if arrays and _reads_arrays(series, chain):
        ts, values = _read_arrays(series, bounds)
        if not chain:
            return ts, values, series.tp
        if len(ts) == 0:
            return [], [], series.tp
        return run_chain(chain, (ts, values, series.tp))
    start, end, head, tail = bounds
    if head is not None:
        ts, values = series.ts[:head], series.values[:head]
    elif tail is not None:
        ts, values = series.ts[-tail:], series.values[-tail:]
    else:
        ts, values = series.slice(start, end)  # fresh lists: the chain may keep them
    return run_chain(chain, (ts, values, series.tp))


def _filter_where(
    db: Database, series_list: Iterable[Series], where: s.Where, ctx: TimeContext
) -> list[Series]:
    return [x for x in series_list if matches(where, series_row(x, db), ctx)]


def run_select(
    stmt: s.Select,
    db: Database,
    ctx: TimeContext,
    precision: int | None,
    plan: SelectPlan | None = None,
) -> dict[str, Sequence[list[Any]]]:
    """The answer of a select statement, keyed by (prefixed) series name."""
    if plan is not None and plan.single is not None and plan.bounds is not None:
        return run_single(plan, stmt, db, precision)
    # -- what SiriDB does on entering the statement's parts
    series_list = select_series(db, stmt.match, None, ctx)
    where = stmt.where
    if isinstance(where, s.WhereTooDeep):
        raise QueryFailure(WHERE_TOO_DEEP)
    merge = stmt.merge
    merge_calls = None
    if merge is not None and merge.using is not None:
        merge_calls = build_calls(merge.using, ctx)
    # -- ... and on leaving them, the last first
    bounds = _bounds(stmt, ctx)
    whole = bounds == _NO_BOUNDS
    limit = db.select_points_limit
    selected = 0
    results: dict[str, Points] = {}
    merge_parts: dict[str, list[Points]] = {}
    presufs: set[tuple[str, str]] = set()
    for aggregate in reversed(stmt.aggregates):
        if where is not None:
            series_list = _filter_where(db, series_list, where, ctx)
            where = None
        key = (aggregate.prefix, aggregate.suffix)
        if key in presufs:
            raise QueryFailure(MULTIPLE_METHODS)
        presufs.add(key)
        parts: list[Points] = []
        if merge is not None:
            merged_name = aggregate.prefix + merge.name + aggregate.suffix
            if not merged_name or merged_name in merge_parts:
                raise QueryFailure(MERGE_NAME)
            merge_parts[merged_name] = parts
        if not series_list:
            continue
        chain = build_calls(aggregate.functions, ctx)
        for series in series_list:
            if selected > limit:
                raise QueryFailure(POINTS_LIMIT.format(limit))
            out = _read_points(series, chain, bounds, whole, arrays=merge is None)
            selected += len(out[0])
            if merge is not None:
                parts.append(out)
                continue
            name = aggregate.prefix + series.name + aggregate.suffix
            if name in results:
                raise QueryFailure(ADD_POINTS)
            results[name] = out
    if selected > limit and not _names_only(stmt.match):
        raise QueryFailure(POINTS_LIMIT.format(limit))
    db.selected_points += selected
    if merge is not None:
        _merge_results(merge_parts, merge_calls, results)
    return _answer(results, db.precision, precision)


def run_single(
    plan: SelectPlan, stmt: s.Select, db: Database, precision: int | None
) -> dict[str, Sequence[list[Any]]]:
    """:func:`run_select` for a plan with ``single`` and constant ``bounds``: one named
    series through one chain (the points limit, checked before a second series and
    never for names alone, cannot be reached)."""
    aggregate = stmt.aggregates[0]
    series = db.series.get(plan.single)  # type: ignore[arg-type]
    if series is None:
        return {}
    bounds = plan.bounds
    assert bounds is not None
    out = _read_points(series, plan.chains[0], bounds, bounds == _NO_BOUNDS, arrays=True)
    db.selected_points += len(out[0])
    name = aggregate.prefix + series.name + aggregate.suffix
    return _answer({name: out}, db.precision, precision)


def _merge_results(
    merge_parts: dict[str, list[Points]],
    merge_calls: Sequence[FunctionCall] | None,
    results: dict[str, Points],
) -> None:
    """Merge each group of parts into ``results``, then run the ``using`` chain."""
    for name, parts in merge_parts.items():
        try:
            merged: Points = merge_series(parts)
        except FunctionError as exc:
            raise QueryFailure(str(exc)) from exc
        if merge_calls is not None and merged[0]:
            merged = run_chain(merge_calls, merged)
        results[name] = merged


def _answer(
    results: dict[str, Points], db_precision: int, precision: int | None
) -> dict[str, Sequence[list[Any]]]:
    """``{name: [[ts, value], ...]}`` in the server's (byte-wise) name order; a large
    answer keeps its points as columns (:class:`PointColumns`), packed in chunks."""
    answer: dict[str, Sequence[list[Any]]] = {}
    names = sorted(results, key=str.encode) if len(results) > 1 else results
    factor = query_factor(precision, db_precision)
    large = sum(len(points[0]) for points in results.values()) > LARGE_ANSWER_POINTS
    for name in names:
        ts, values, _ = results[name]
        if isinstance(ts, np.ndarray) and not large:  # numpy views of a numeric series
            ts, values = ts.tolist(), values.tolist()
        if large:
            answer[name] = PointColumns(ts, values, factor)
        elif factor is None:
            answer[name] = list(map(list, zip(ts, values)))
        else:
            answer[name] = [[scale_timestamp(t, factor), v] for t, v in zip(ts, values)]
    return answer
