"""Evaluate ``select``: read points, run function chains, merge, apply the points limit."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from typing import Any

from tsconnector.server.model import Database, Series
from tsconnector.server.query import syntax as s
from tsconnector.server.query.errors import QueryFailure
from tsconnector.server.query.functions import (
    FunctionCall,
    FunctionError,
    apply_function,
    compile_filter_regex,
    fast_first_string,
    fast_last_string,
    merge_series,
)
from tsconnector.server.query.selection import select_series
from tsconnector.server.query.timeexpr import TimeContext, evaluate, evaluate_time

MULTIPLE_METHODS = (
    "When using multiple select methods, add a prefix and/or suffix to the selection "
    "to make them unique."
)
POINTS_LIMIT = (
    "Query has reached the maximum number of selected points ({}). Please use another "
    "time window, an aggregation function or select less series to reduce the number "
    "of points."
)

Points = tuple[list[int], list[Any], str]
#: ``(start, end, head, tail)`` of a select; None where not given.
Bounds = tuple[int | None, int | None, int | None, int | None]
_NO_BOUNDS: Bounds = (None, None, None, None)


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def convert_ts(ts: int, db_precision: int, precision: int | None) -> int:
    """A timestamp in another precision, with the real server's floating-point rounding.

    Scaling up multiplies in double precision; scaling down divides in single precision.
    """
    if precision is None or precision == db_precision:
        return ts
    if precision > db_precision:
        return int(ts * float(10 ** (3 * (precision - db_precision))))
    return int(_float32(_float32(float(ts)) / float(10 ** (3 * (db_precision - precision)))))


def build_calls(specs: Sequence[s.FuncSpec], ctx: TimeContext) -> list[FunctionCall]:
    """Turn a ``=>`` chain into function calls; ``offset(x)`` shifts the previous window."""
    calls: list[FunctionCall] = []
    for spec in specs:
        args = [evaluate(a, ctx) for a in spec.args]
        if spec.name == "offset":
            if calls and calls[-1].window is not None:
                calls[-1] = dataclasses.replace(calls[-1], offset=args[0])
            continue
        if spec.name == "limit":
            call = FunctionCall("limit", limit=evaluate(spec.limit, ctx) if spec.limit else None,
                                inner=spec.inner)
        elif spec.name == "filter":
            operand = spec.operand
            if isinstance(operand, s.MatchRegex):
                operand = compile_filter_regex(operand.text)
            call = FunctionCall("filter", operator=spec.operator, operand=operand)
        elif spec.name == "derivative":
            call = FunctionCall(
                "derivative",
                interval=args[0] if args else None,
                window=args[1] if len(args) > 1 else None,
            )
        else:
            call = FunctionCall(spec.name, window=args[0] if args else None)
        calls.append(call)
    return calls


def run_chain(calls: Sequence[FunctionCall], points: Points) -> Points:
    ts, values, tp = points
    try:
        for call in calls:
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
        t, v = fast_first_string(series.ts[:size], series.values[:size], series.ts[0])
    else:
        size = chunks[-1]
        t, v = fast_last_string(series.ts[-size:], series.values[-size:], series.ts[-1])
    return ([t], [v], "string"), list(calls[1:])


def _validate(calls: Sequence[FunctionCall]) -> None:
    """Run the argument checks the server does before reading any point."""
    for call in calls:
        try:
            apply_function(call, [], [], "integer")
        except FunctionError as exc:
            raise QueryFailure(str(exc)) from exc


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

    Built once per query text (see :func:`plan_select`), so repeated queries skip
    evaluating and validating their function chains; ``bounds`` is None when the time
    range or ``head``/``tail`` use ``now`` (or are invalid) and must be evaluated per run.
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
    """The reusable part of ``stmt``; None when its chains use ``now`` or fail to validate
    (those are then built, and their errors raised, on every run)."""
    specs = [a.functions for a in stmt.aggregates]
    if stmt.merge is not None and stmt.merge.using is not None:
        specs.append(stmt.merge.using)
    if any(map(_chain_uses_now, specs)):
        return None
    ctx = TimeContext(precision, tz, 0)
    try:
        chains, merge_calls = _build_chains(stmt, ctx)
    except QueryFailure:
        return None
    bounds = None
    if not any(map(_uses_now, (stmt.after, stmt.before, stmt.head, stmt.tail))):
        try:
            bounds = _bounds(stmt, ctx)
        except QueryFailure:
            bounds = None
    single = None
    if len(chains) == 1 and stmt.where is None and stmt.merge is None:
        single = stmt.match.name if isinstance(stmt.match, s.MatchName) else None
    return SelectPlan(
        tuple(map(tuple, chains)),
        tuple(merge_calls) if merge_calls is not None else None,
        bounds,
        single,
    )


def _build_chains(
    stmt: s.Select, ctx: TimeContext
) -> tuple[list[list[FunctionCall]], list[FunctionCall] | None]:
    """Check prefixes, then build and validate every chain (the server's parse order)."""
    aggregates = stmt.aggregates
    if len(aggregates) > 1:
        keys = [(a.prefix, a.suffix) for a in aggregates]
        if len(set(keys)) != len(keys):
            raise QueryFailure(MULTIPLE_METHODS)
    chains = [build_calls(a.functions, ctx) for a in aggregates]
    merge_calls = None
    if stmt.merge is not None and stmt.merge.using is not None:
        merge_calls = build_calls(stmt.merge.using, ctx)
    for chain in [*chains, *([merge_calls] if merge_calls else [])]:
        _validate(chain)
    return chains, merge_calls


def _bounds(stmt: s.Select, ctx: TimeContext) -> Bounds:
    """``(start, end, head, tail)`` of a select, each None when not given."""
    start = evaluate_time(stmt.after, ctx) if stmt.after is not None else None
    end = evaluate_time(stmt.before, ctx) if stmt.before is not None else None
    if start is not None and end is not None and start > end:
        raise QueryFailure(f"Start time ({start}) should not be greater than end time ({end})")
    head = evaluate(stmt.head, ctx) if stmt.head is not None else None
    tail = evaluate(stmt.tail, ctx) if stmt.tail is not None else None
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


def _read_points(
    series: Series, chain: Sequence[FunctionCall], bounds: Bounds, whole: bool
) -> Points:
    """One series through one chain, as the server reads and computes it."""
    if whole and chain:
        if series.tp == "string":
            quirk = _string_chunk_answer(series, chain)
            if quirk is not None:
                return run_chain(quirk[1], quirk[0])
        head_out = _whole_head(chain[0], series)
        if head_out is not None:
            return run_chain(chain[1:], head_out) if len(chain) > 1 else head_out
    start, end, head, tail = bounds
    ts, values = series.slice(start, end)  # fresh lists: the chain may keep them
    if head is not None:
        ts, values = ts[:max(head, 0)], values[:max(head, 0)]
    if tail is not None:
        cut = max(len(ts) - max(tail, 0), 0)
        ts, values = ts[cut:], values[cut:]
    return run_chain(chain, (ts, values, series.tp))


def run_select(
    stmt: s.Select,
    db: Database,
    ctx: TimeContext,
    precision: int | None,
    plan: SelectPlan | None = None,
) -> dict[str, list[list[Any]]]:
    """The answer of a select statement, keyed by (prefixed) series name.

    ``plan`` (from :func:`plan_select` for the same statement, precision and zone)
    saves rebuilding the function chains and constant time bounds.
    """
    if plan is not None and plan.single is not None and plan.bounds is not None:
        return run_single(plan, stmt, db, precision)
    if plan is None:
        chains, merge_calls = _build_chains(stmt, ctx)
    else:
        chains, merge_calls = plan.chains, plan.merge_calls  # type: ignore[assignment]
    bounds = plan.bounds if plan is not None and plan.bounds is not None else _bounds(stmt, ctx)

    # The server runs each aggregate over every series in its own (id) order; the
    # points limit counts the points each aggregate produced, checked before reading
    # the next series and, for selections not made of names alone, once at the end.
    series_list = select_series(db, stmt.match, stmt.where, ctx)
    limit = db.select_points_limit
    selected = 0
    results: dict[str, Points] = {}
    merge_parts: dict[str, list[Points]] = {}
    whole = bounds == _NO_BOUNDS
    merge = stmt.merge
    for aggregate, chain in zip(stmt.aggregates, chains):
        if merge is not None:
            parts = merge_parts.setdefault(aggregate.prefix + merge.name + aggregate.suffix, [])
        for series in series_list:
            if selected > limit:
                raise QueryFailure(POINTS_LIMIT.format(limit))
            out = _read_points(series, chain, bounds, whole)
            selected += len(out[0])
            if merge is not None:
                parts.append(out)
            else:
                results[aggregate.prefix + series.name + aggregate.suffix] = out
    if selected > limit and not _names_only(stmt.match):
        raise QueryFailure(POINTS_LIMIT.format(limit))
    db.selected_points += selected
    if merge is not None:
        _merge_results(merge_parts, merge_calls, results)
    return _answer(results, db.precision, precision)


def run_single(
    plan: SelectPlan, stmt: s.Select, db: Database, precision: int | None
) -> dict[str, list[list[Any]]]:
    """:func:`run_select` for a plan with ``single`` and constant ``bounds``: one named
    series through one chain (the points limit, checked before a second series and
    never for names alone, cannot be reached)."""
    aggregate = stmt.aggregates[0]
    series = db.series.get(plan.single)  # type: ignore[arg-type]
    if series is None:
        return {}
    bounds = plan.bounds
    assert bounds is not None
    out = _read_points(series, plan.chains[0], bounds, bounds == _NO_BOUNDS)
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
) -> dict[str, list[list[Any]]]:
    """``{name: [[ts, value], ...]}`` in the server's (byte-wise) name order."""
    answer: dict[str, list[list[Any]]] = {}
    names = sorted(results, key=str.encode) if len(results) > 1 else results
    same = precision is None or precision == db_precision
    for name in names:
        ts, values, _ = results[name]
        if same:
            answer[name] = list(map(list, zip(ts, values)))
        else:
            answer[name] = [[convert_ts(t, db_precision, precision), v] for t, v in zip(ts, values)]
    return answer
