"""SiriDB 2.0 aggregate, filter and merge functions as a pure library.

The embedded server's query layer calls :func:`apply_function` once per function of a
``select f1() => f2() ...`` chain and :func:`merge_points` for ``merge as``.  Every rule
here follows the real server: output types, float arithmetic order (sequential sums, the
two-pass variance), window alignment, integer overflow errors and the exact error texts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tsconnector.server.regex import RegexError, SiriRegex

__all__ = [
    "AGGREGATE_NAMES",
    "FUNCTION_NAMES",
    "FunctionCall",
    "FunctionError",
    "apply_function",
    "compile_filter_regex",
    "fast_first_string",
    "fast_last_string",
    "merge_points",
    "merge_series",
    "read_string_chunk",
    "validate_call",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_UINT64 = 2**64

#: Functions that reduce a group of points to one point (usable inside ``limit``).
AGGREGATE_NAMES = frozenset(
    {
        "count",
        "sum",
        "mean",
        "median",
        "median_low",
        "median_high",
        "min",
        "max",
        "first",
        "last",
        "stddev",
        "variance",
        "pvariance",
    }
)
#: Every function name :func:`apply_function` accepts.
FUNCTION_NAMES = AGGREGATE_NAMES | {
    "difference",
    "derivative",
    "limit",
    "filter",
    "timeval",
    "interval",
    "points",
    "offset",
}

_FLOAT_RESULT = frozenset({"mean", "median", "variance", "pvariance", "stddev", "derivative"})
_STRING_OK = frozenset({"count", "first", "last", "filter", "timeval", "interval", "points"})
_OPERATORS = frozenset({"==", "!=", "<", ">", "<=", ">=", "~", "!~"})

# Above this many points per window a group is summed with one cumsum call; smaller
# windows are summed column-wise (one numpy call per position inside the window).
_BIG_GROUP = 512
# merge: SiriDB switches algorithm on the number of series and of points.
_MERGE_MAX_QSORT = 250_000


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """One function of a select chain, with its arguments in database units."""

    name: str
    window: int | None = None
    limit: int | None = None
    inner: str | None = None
    operator: str | None = None
    operand: Any = None
    interval: int | None = None
    # ``=> offset(x)`` folded into the previous windowed function: bucket ends move by x.
    offset: int = 0


class FunctionError(Exception):
    """A function failed; ``str(exc)`` is the exact SiriDB error message."""


# --------------------------------------------------------------------------- validation


def validate_call(call: FunctionCall) -> None:
    """Raise the errors SiriDB reports while parsing a function (before any points are read)."""
    name = call.name
    if name not in FUNCTION_NAMES:
        raise ValueError(f"unknown function {name!r}")
    if name == "limit":
        if call.limit is None or call.limit <= 0:
            raise FunctionError("Limit must be an integer value larger than zero.")
        if call.inner not in AGGREGATE_NAMES:
            raise ValueError(f"limit() cannot use {call.inner!r}")
        return
    if name == "derivative" and call.interval is not None and call.interval == 0:
        raise FunctionError("Time-span must be an integer value larger than zero.")
    if call.window is not None and call.window <= 0:
        raise FunctionError("Group by time must be an integer value larger than zero.")
    if name == "filter":
        opr = call.operator or "=="
        if opr not in _OPERATORS:
            raise ValueError(f"unknown filter operator {opr!r}")
        operand = call.operand
        if isinstance(operand, SiriRegex):
            if opr not in ("==", "!="):
                raise FunctionError(
                    "Regular expressions can only be used with 'equal' (==) "
                    "or 'not equal' (!=) operator."
                )
        elif isinstance(operand, bool) or not isinstance(operand, (int, float, str)):
            raise ValueError(f"unsupported filter operand {operand!r}")
        elif not isinstance(operand, str) and opr in ("~", "!~"):
            raise FunctionError(f"Operator '{opr}' can only be used with strings.")


# --------------------------------------------------------------------------- entry point


def apply_function(
    call: FunctionCall, ts: list[int], values: list[Any], tp: str
) -> tuple[list[int], list[Any], str]:
    """Run one function on sorted points of type ``tp``; return (timestamps, values, type)."""
    validate_call(call)
    if tp not in ("integer", "float", "string"):
        raise ValueError(f"unknown series type {tp!r}")
    if len(ts) == 0:
        # SiriDB never runs a function on an empty point list[Any]: it passes through.
        return [], [], tp
    name = call.name
    if name in ("points", "offset"):
        return list(ts), list(values), tp
    if name == "limit":
        return _limit(call, ts, values, tp)
    if name == "timeval":
        return list(ts), list(ts), "integer"
    if name == "interval":
        return list(ts[1:]), [b - a for a, b in itertools.pairwise(ts)], "integer"
    if name == "filter":
        return _filter(call, ts, values, tp)
    if call.window is not None:
        return _group_by(name, ts, values, tp, call.window, call.offset, call)
    if name == "difference":
        return _difference(ts, values, tp)
    if name == "derivative":
        return _derivative(ts, values, tp, float(call.interval or 1))
    if name in ("first", "last"):
        # Whole-series first()/last(): the point itself (what _aggregate computes).
        i = 0 if name == "first" else -1
        return [ts[i]], [values[i]], tp
    label = ts[0] if name == "first" else ts[-1]
    return _aggregate(name, np.array([0], dtype=np.int64), [label], ts, values, tp)


# --------------------------------------------------------------------------- limit / groups


def _limit(
    call: FunctionCall, ts: list[int], values: list[Any], tp: str
) -> tuple[list[int], list[Any], str]:
    """``limit(N, fn)``: pass through up to N points, else window so at most N+1 remain."""
    assert call.limit is not None
    assert call.inner is not None
    if len(ts) <= call.limit:
        return list(ts), list(values), tp
    window = (ts[-1] - ts[0]) // call.limit + 1
    offset = ((ts[0] - 1) % _UINT64) % window
    return _group_by(call.inner, ts, values, tp, window, offset, call)


def _group_label(t: int, window: int, offset: int) -> int:
    """SiriDB's bucket label: ceil(t / window) * window + offset, in uint64 arithmetic."""
    return ((((t + window - 1) % _UINT64) // window) * window + offset) % _UINT64


def _group_starts(ts: list[int], window: int, offset: int) -> tuple[np.ndarray, list[int]]:
    """Split sorted timestamps into SiriDB's windows: (start index per group, labels)."""
    n = len(ts)
    if isinstance(ts, np.ndarray):
        found = _array_group_starts(ts, window, offset)
        if found is not None:
            return found
        ts = ts.tolist()
    if offset == 0 and ts[-1] + window - 1 < _UINT64:
        arr = np.asarray(ts, dtype=np.uint64)
        w = np.uint64(window)
        labels = ((arr + (w - np.uint64(1))) // w) * w
        starts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        starts = np.concatenate((np.zeros(1, dtype=np.int64), starts.astype(np.int64)))
        return starts, labels[starts].tolist()
    # General rule (used with an offset or near the uint64 limit): a new group starts at
    # the first point whose timestamp is above the current group's label.
    arr = np.asarray(ts, dtype=np.uint64)
    starts_l: list[int] = []
    labels_l: list[int] = []
    i = 0
    while i < n:
        label = _group_label(ts[i], window, offset)
        starts_l.append(i)
        labels_l.append(label)
        j = int(np.searchsorted(arr, np.uint64(label), side="right"))
        i = max(j, i + 1)
    return np.asarray(starts_l, dtype=np.int64), labels_l


#: Windowed aggregates that also take numpy columns (int64 timestamps, int64/float64
#: values) and answer with Python values: a select hands them the stored arrays.
ARRAY_AGGREGATES = frozenset({
    "count", "sum", "min", "max", "mean", "first", "last", "median", "median_low",
    "median_high", "variance", "pvariance", "stddev",
})


def _array_group_starts(
    ts: np.ndarray, window: int, offset: int
) -> tuple[np.ndarray, list[int]] | None:
    """:func:`_group_starts` for a sorted int64 array, from the window edges alone: the
    points labelled ``L`` are those with ``L - window < t <= L``, so each group ends where
    ``searchsorted(ts, L, "right")`` says (a few hundred edges, not a million labels).
    None where that does not apply (an offset, labels beyond int64, very sparse data)."""
    n = len(ts)
    first, last = int(ts[0]), int(ts[-1])
    if offset or first < 0:
        return None
    low = -(-first // window) * window
    high = -(-last // window) * window
    edges = (high - low) // window + 1
    if high > INT64_MAX or edges > n:
        return None
    labels = np.arange(low, high + 1, window, dtype=np.int64)
    ends = np.searchsorted(ts, labels, side="right")
    starts = np.empty(edges, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1]
    used = ends > starts
    return starts[used], labels[used].tolist()


def _group_by(
    name: str,
    ts: list[int],
    values: list[Any],
    tp: str,
    window: int,
    offset: int,
    call: FunctionCall,
) -> tuple[list[int], list[Any], str]:
    starts, labels = _group_starts(ts, window, offset)
    # derivative(interval, window): the rate factor becomes interval / window
    timespan = float(call.interval or 1) / float(window) if name == "derivative" else 1.0
    return _aggregate(name, starts, labels, ts, values, tp, timespan=timespan)


def _string_error(name: str) -> FunctionError:
    return FunctionError(f"Cannot use {name}() on string type.")


def _aggregate(
    name: str,
    starts: np.ndarray,
    labels: list[int],
    ts: list[int],
    values: list[Any],
    tp: str,
    timespan: float = 1.0,
) -> tuple[list[int], list[Any], str]:
    """Reduce each group [starts[g], starts[g+1]) to one point labelled labels[g]."""
    n = len(ts)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = n
    sizes = ends - starts
    if name == "count":
        return labels, sizes.tolist(), "integer"
    if name in ("first", "last"):
        if isinstance(values, np.ndarray):  # numeric columns (see ARRAY_AGGREGATES)
            return labels, values[starts if name == "first" else ends - 1].tolist(), tp
        idx = (starts if name == "first" else ends - 1).tolist()
        if tp == "string":
            # SiriDB copies the source point's own timestamp for strings.
            return [ts[i] for i in idx], [values[i] for i in idx], tp
        return labels, [values[i] for i in idx], tp
    if tp == "string":
        raise _string_error(name)
    if tp == "integer":
        iv = np.asarray(values, dtype=np.int64)
        fv = iv.astype(np.float64)
    else:
        iv = None
        fv = np.asarray(values, dtype=np.float64)

    if name == "sum":
        if iv is not None:
            return labels, _int_sums(iv, starts, ends, sizes), tp
        return labels, _seq_sums(fv, starts, sizes).tolist(), tp
    if name in ("min", "max"):
        return labels, _min_max(name, iv, fv, starts), tp
    if name == "mean":
        return labels, (_seq_sums(fv, starts, sizes) / sizes).tolist(), "float"
    if name in ("variance", "pvariance", "stddev"):
        return labels, _variances(name, fv, starts, sizes), "float"
    if name in ("median", "median_low", "median_high"):
        return labels, _medians(name, iv, fv, starts, sizes), ("float" if name == "median" else tp)
    if name == "difference":
        return labels, _window_difference(iv, fv, starts, ends, sizes), tp
    if name == "derivative":
        first = fv[starts]
        last = fv[ends - 1]
        with np.errstate(all="ignore"):
            out = (last - first) * timespan
        out[sizes == 1] = 0.0
        return labels, out.tolist(), "float"
    raise ValueError(f"{name}() is not an aggregate")


# --------------------------------------------------------------------------- arithmetic


def _seq_sums(fv: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per-group sums added strictly left to right from 0.0, like SiriDB's C loop."""
    ngroups = len(starts)
    out = np.empty(ngroups, dtype=np.float64)
    big = sizes >= _BIG_GROUP
    for g in np.flatnonzero(big).tolist():
        s = int(starts[g])
        seg = fv[s : s + int(sizes[g])].copy()
        seg[0] += 0.0  # 0.0 + -0.0 is +0.0 in the C loop
        out[g] = np.cumsum(seg)[-1]
    small = np.flatnonzero(~big)
    if len(small):
        order = small[np.argsort(-sizes[small], kind="stable")]
        s_starts = starts[order]
        s_sizes = sizes[order]
        acc = fv[s_starts] + 0.0
        for k in range(1, int(s_sizes[0])):
            m = int(np.searchsorted(-s_sizes, -k, side="left"))
            acc[:m] += fv[s_starts[:m] + k]
        out[order] = acc
    return out


def _int_sums(iv: np.ndarray, starts: np.ndarray, ends: np.ndarray, sizes: np.ndarray) -> list[int]:
    """Integer sums; any intermediate int64 overflow is an error, as in SiriDB."""
    lo = int(iv.min())
    hi = int(iv.max())
    if max(abs(lo), abs(hi)) * int(sizes.max()) <= INT64_MAX:
        sums: list[int] = np.add.reduceat(iv, starts).tolist()
        return sums
    vals = iv.tolist()
    out: list[int] = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        total = 0
        for v in vals[s:e]:
            total += v
            if total > INT64_MAX or total < INT64_MIN:
                raise FunctionError("Overflow detected while using sum().")
        out.append(total)
    return out


def _min_max(name: str, iv: np.ndarray | None, fv: np.ndarray, starts: np.ndarray) -> list[Any]:
    if iv is not None:
        int_fn = np.minimum if name == "min" else np.maximum
        ints: list[Any] = int_fn.reduceat(iv, starts).tolist()
        return ints
    # The C loop keeps the first value unless a later one compares strictly better, so
    # a NaN is only returned when it is the first value of the group.
    fn = np.fmin if name == "min" else np.fmax
    out = fn.reduceat(fv, starts)
    first = fv[starts]
    out[np.isnan(first)] = np.nan
    result: list[Any] = out.tolist()
    return result


def _variances(name: str, fv: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> list[Any]:
    """Two-pass variance: sequential mean, then sequential sum of squared deviations."""
    means = _seq_sums(fv, starts, sizes) / sizes
    dev = fv - np.repeat(means, sizes)
    ssd = _seq_sums(dev * dev, starts, sizes)
    with np.errstate(all="ignore"):
        if name == "pvariance":
            pvar: list[Any] = (ssd / sizes).tolist()
            return pvar
        out = ssd / (sizes - 1)
        if name == "stddev":
            out = np.sqrt(out)
    out[sizes == 1] = 0.0  # sample variance of one point is defined as 0.0
    var: list[Any] = out.tolist()
    return var


def _dbl_to_int64(value: float) -> int:
    """C's (int64_t) cast of a double as x86-64 does it (out of range gives INT64_MIN)."""
    if math.isnan(value) or value >= 2.0**63 or value < -(2.0**63):
        return INT64_MIN
    return int(value)


def _wrap64(value: int) -> int:
    return (value + 2**63) % _UINT64 - 2**63


def _medians(
    name: str,
    iv: np.ndarray | None,
    fv: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
) -> list[Any]:
    gid = np.repeat(np.arange(len(starts)), sizes)
    src = iv if iv is not None else fv
    srt = src[np.lexsort((src, gid))].tolist()
    out: list[Any] = []
    for s, size in zip(starts.tolist(), sizes.tolist()):
        if size == 1:
            v = srt[s]
            out.append(float(v) if name == "median" else v)
            continue
        if name == "median_low":
            k = (size - 1) // 2
        elif name == "median_high" or size % 2 == 1:
            k = size // 2
        else:
            a, b = srt[s + size // 2 - 1], srt[s + size // 2]
            # int64 a + b wraps in C before the division by 2.0
            out.append(float(_wrap64(a + b)) / 2.0 if iv is not None else (a + b) / 2.0)
            continue
        v = srt[s + k]
        if iv is not None:
            # SiriDB's selection helper returns a double, cast back to int64.
            v = _dbl_to_int64(float(v))
            out.append(float(v) if name == "median" else v)
        else:
            out.append(v)
    return out


def _check_int_difference(first: int, last: int) -> int:
    diff = last - first
    if diff > INT64_MAX or diff < INT64_MIN:
        raise FunctionError("Overflow detected while using difference().")
    return diff


def _window_difference(
    iv: np.ndarray | None,
    fv: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    sizes: np.ndarray,
) -> list[Any]:
    if iv is None:
        out = fv[ends - 1] - fv[starts]
        out[sizes == 1] = 0.0
        diffs: list[Any] = out.tolist()
        return diffs
    firsts = iv[starts].tolist()
    lasts = iv[ends - 1].tolist()
    return [_check_int_difference(a, b) for a, b in zip(firsts, lasts)]


def _difference(ts: list[int], values: list[Any], tp: str) -> tuple[list[int], list[Any], str]:
    if tp == "string":
        raise _string_error("difference")
    if tp == "integer":
        out = [_check_int_difference(a, b) for a, b in itertools.pairwise(values)]
    else:
        fv = np.asarray(values, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = (fv[1:] - fv[:-1]).tolist()
    return list(ts[1:]), out, tp


def _derivative(
    ts: list[int], values: list[Any], tp: str, timespan: float
) -> tuple[list[int], list[Any], str]:
    if tp == "string":
        raise _string_error("derivative")
    fv = np.asarray(values, dtype=np.int64 if tp == "integer" else np.float64)
    fv = fv.astype(np.float64)
    t = np.asarray(ts, dtype=np.uint64)
    dt = (t[1:] - t[:-1]).astype(np.float64)
    with np.errstate(all="ignore"):
        out = (fv[1:] - fv[:-1]) / dt * timespan
    return list(ts[1:]), out.tolist(), "float"


# --------------------------------------------------------------------------- filter

_CMP: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "~": lambda a, b: b in a,
    "!~": lambda a, b: b not in a,
}


def _filter(
    call: FunctionCall, ts: list[int], values: list[Any], tp: str
) -> tuple[list[int], list[Any], str]:
    opr = call.operator or "=="
    operand = call.operand
    is_text = isinstance(operand, (str, SiriRegex))
    if tp == "string" and not is_text:
        raise FunctionError("Cannot use a number filter on string type.")
    if tp != "string" and is_text:
        raise FunctionError("Cannot use a string filter on number type.")
    if isinstance(operand, SiriRegex):
        want = opr == "=="
        keep = [operand.matches(v) for v in values]
        keep_mask = keep if want else [not k for k in keep]
        idx = [i for i, k in enumerate(keep_mask) if k]
        return [ts[i] for i in idx], [values[i] for i in idx], tp
    if tp == "string":
        cmp = _CMP[opr]
        idx = [i for i, v in enumerate(values) if cmp(v, operand)]
        return [ts[i] for i in idx], [values[i] for i in idx], tp
    if tp == "integer":
        # A float operand is truncated to int64 for an integer series.
        bound = operand if isinstance(operand, int) else _dbl_to_int64(float(operand))
        arr = np.asarray(values, dtype=np.int64)
        if not INT64_MIN <= bound <= INT64_MAX:
            raise ValueError("filter operand out of int64 range")
        rhs: Any = np.int64(bound)
    else:
        arr = np.asarray(values, dtype=np.float64)
        rhs = np.float64(float(operand))
        mask = _float_filter_mask(opr, arr, rhs)
        idx = np.flatnonzero(mask).tolist()
        return [ts[i] for i in idx], [values[i] for i in idx], tp
    mask = _CMP[opr](arr, rhs)
    idx = np.flatnonzero(mask).tolist()
    return [ts[i] for i in idx], [values[i] for i in idx], tp


def _float_filter_mask(opr: str, arr: np.ndarray, rhs: np.float64) -> np.ndarray:
    """SiriDB's float comparison: for ``==``, ``!=``, ``>=`` and ``<=`` a NaN value
    equals a NaN operand and nothing else; ``<`` and ``>`` are plain."""
    if opr in ("<", ">"):
        strict: np.ndarray = _CMP[opr](arr, rhs)
        return strict
    value_nan = np.isnan(arr)
    operand_nan = bool(np.isnan(rhs))
    with np.errstate(invalid="ignore"):
        plain = _CMP[opr](arr, rhs)
    if opr == "!=":
        return np.where(value_nan, not operand_nan, plain)
    return np.where(value_nan, operand_nan, plain)


def compile_filter_regex(source: str) -> SiriRegex:
    """Compile a SiriDB ``/pattern/`` or ``/pattern/i`` literal the way the server does.

    SiriDB replaces the delimiting slashes by ``^`` and ``$``, so ``/^[ab]/`` becomes
    ``^^[ab]$`` and only matches the one-letter strings ``a`` and ``b``. Raises
    :class:`FunctionError` with SiriDB's message when the pattern does not compile.
    """
    if len(source) < 2 or source[0] != "/":
        raise ValueError(f"not a regular expression literal: {source!r}")
    body = source[1:]
    ignore_case = body.endswith("/i")
    if ignore_case:
        body = body[:-2]
    elif body.endswith("/"):
        body = body[:-1]
    else:
        raise ValueError(f"not a regular expression literal: {source!r}")
    try:
        return SiriRegex(body, ignore_case)
    except RegexError as exc:
        raise FunctionError(str(exc)) from exc


# --------------------------------------------------------------------------- merge


def _part_type(values: list[Any]) -> str:
    v = values[0]
    if isinstance(v, str):
        return "string"
    if isinstance(v, float):
        return "float"
    return "integer"


def merge_points(parts: list[tuple[list[int], list[Any]]]) -> tuple[list[int], list[Any]]:
    """Merge the points of several series (in the order SiriDB read them) into one list.

    Value types are taken from the values (a series holds one type); integer series are
    promoted to float when merged with float series.
    """
    typed = [(t, v, _part_type(v) if v else "integer") for t, v in parts]
    ts, values, _ = merge_series(typed)
    return ts, values


def merge_series(
    parts: list[tuple[list[int], list[Any], str]],
) -> tuple[list[int], list[Any], str]:
    """Merge typed point lists exactly as SiriDB orders them; returns (ts, values, type)."""
    if not parts:
        return [], [], "integer"
    if len(parts) == 1:
        t, v, tp = parts[0]
        return list(t), list(v), tp
    plist = list(parts)
    # Drop empty series; SiriDB fills the gap with the last series of the list.
    i = 0
    n_live = len(plist)
    while i < n_live:
        if not plist[i][0]:
            n_live -= 1
            if n_live == 0:
                t, v, tp = plist[i]
                return [], [], tp
            plist[i] = plist[n_live]
            continue
        i += 1
    plist = plist[:n_live]
    types = {tp for _, _, tp in plist}
    if len(types) > 1 and "string" in types:
        raise FunctionError("Cannot merge string and number series.")
    if len(plist) == 1:
        t, v, tp = plist[0]
        return list(t), list(v), tp
    out_tp = "float" if len(types) > 1 else plist[0][2]
    series = [
        (list(t), [float(x) for x in v] if (out_tp == "float" and tp == "integer") else list(v))
        for t, v, tp in plist
    ]
    total = sum(len(t) for t, _ in series)
    if len(series) < 4:
        ts, vals = _merge_sort_while(series)
    elif total == len(series) or total < _MERGE_MAX_QSORT:
        ts, vals = _merge_and_sort(series)
    else:
        ts, vals = _merge_highest(series)
    return ts, vals, out_tp


def _merge_sort_while(series: list[tuple[list[int], list[Any]]]) -> tuple[list[int], list[Any]]:
    """SiriDB's k-way merge from the back: ties go to the lowest list[Any] position first."""
    arrs = [np.asarray(t, dtype=np.uint64) for t, _ in series]
    order = list(range(len(series)))  # live list[Any] of series indices (plist)
    cursor = [len(t) for t, _ in series]  # exclusive end of what is left per series
    chunks: list[np.ndarray] = []  # global point ids, collected back to front
    offsets = np.cumsum([0] + [len(t) for t, _ in series])
    while order:
        # No series is exhausted above the highest first timestamp: a fixed tie order.
        e = max(int(arrs[s][0]) for s in order)
        ids, keys_ts, keys_pos = [], [], []
        for pos, s in enumerate(order):
            lo = int(np.searchsorted(arrs[s][: cursor[s]], np.uint64(e), side="right"))
            if lo < cursor[s]:
                ids.append(np.arange(lo, cursor[s]) + offsets[s])
                keys_ts.append(arrs[s][lo : cursor[s]])
                keys_pos.append(np.full(cursor[s] - lo, -pos))
                cursor[s] = lo
        if ids:
            all_ids = np.concatenate(ids)
            srt = np.lexsort((all_ids, np.concatenate(keys_pos), np.concatenate(keys_ts)))
            chunks.append(all_ids[srt])
        # At timestamp e, step point-run by point-run: exhausted series are swapped out.
        block: list[np.ndarray] = []
        while True:
            pick = -1
            for pos, s in enumerate(order):
                if cursor[s] and int(arrs[s][cursor[s] - 1]) == e:
                    pick = pos
                    break
            if pick < 0:
                break
            s = order[pick]
            lo = int(np.searchsorted(arrs[s][: cursor[s]], np.uint64(e), side="left"))
            block.append(np.arange(lo, cursor[s]) + offsets[s])
            cursor[s] = lo
            if lo == 0:
                last = order.pop()
                if pick < len(order):
                    order[pick] = last
        # the first run taken at e ends up last in the output (chunks run back to front)
        chunks.extend(block)
    flat_ts = [x for t, _ in series for x in t]
    flat_v = [x for _, v in series for x in v]
    ids_all = np.concatenate(list(reversed(chunks))).tolist() if chunks else []
    return [flat_ts[i] for i in ids_all], [flat_v[i] for i in ids_all]


def _merge_and_sort(series: list[tuple[list[int], list[Any]]]) -> tuple[list[int], list[Any]]:
    """Round-robin fill from the back, then a stable sort on timestamp."""
    plist: list[list[Any]] = [[t, v, len(t) - 1] for t, v in series]
    total = sum(len(t) for t, _ in series)
    out: list[tuple[int, Any]] = [(0, None)] * total
    n = total
    while plist:
        i = 0
        while i < len(plist):
            item = plist[i]
            n -= 1
            out[n] = (item[0][item[2]], item[1][item[2]])
            item[2] -= 1
            if item[2] < 0:
                last = plist.pop()
                if i < len(plist):
                    plist[i] = last
            i += 1
    out.sort(key=lambda p: p[0])
    return [p[0] for p in out], [p[1] for p in out]


def _merge_highest(series: list[tuple[list[int], list[Any]]]) -> tuple[list[int], list[Any]]:
    """SiriDB's merge for many series with many points (kept with its cursor quirks)."""
    plist: list[list[Any]] = [[t, v, len(t) - 1] for t, v in series]
    total = sum(len(t) for t, _ in series)
    out_ts = [0] * total
    out_v: list[Any] = [None] * total
    n = total
    m: int | None = None
    l_idx = 0
    highest = 0
    while plist:
        if m is not None:
            tp_idx = m
            m = None
            while l_idx < len(plist) and tp_idx < len(plist):
                item = plist[tp_idx]
                if item[0][item[2]] == highest:
                    m = tp_idx
                    break
                l_idx += 1
                tp_idx += 1
        if m is None:
            m = 0
            for i in range(1, len(plist)):
                cand = plist[i]
                best = plist[m]
                if cand[0][cand[2]] > best[0][best[2]]:
                    m = i
                    l_idx = i
                    highest = cand[0][cand[2]]
        item = plist[m]
        n -= 1
        out_ts[n] = item[0][item[2]]
        out_v[n] = item[1][item[2]]
        if item[2]:
            item[2] -= 1
            m += 1
            l_idx += 1
        else:
            last = plist.pop()
            if m < len(plist):
                plist[m] = last
    return out_ts, out_v


# --------------------------------------------------------------------------- string quirk


def read_string_chunk(
    ts: list[int], values: list[str], start: int | None = None, end: int | None = None
) -> tuple[list[int], list[str]]:
    """Read one stored string chunk between ``start`` (>=) and ``end`` (<) like SiriDB 2.0.

    Chunks of 5 or more strings are stored compressed, and SiriDB's reader of those
    returns the right timestamps but takes the values from the wrong offset when the
    range cuts the chunk: it skips as many strings as were cut off at the end and does
    not skip those cut off at the start.  Smaller chunks are read correctly.
    """
    size = len(ts)
    if size < 5:
        idx = [
            i
            for i in range(size)
            if (start is None or ts[i] >= start) and (end is None or ts[i] < end)
        ]
        return [ts[i] for i in idx], [values[i] for i in idx]
    remaining = size
    n = size
    k = 0
    slot = 0
    slots = [ts[0]]
    while True:
        if end is not None and not ts[k] < end:
            break
        remaining -= 1
        if remaining == 0:
            break
        if start is not None and ts[k] < start:
            n -= 1
        else:
            slot += 1
            slots.append(0)
        k += 1
        slots[slot] = ts[k]
    n -= remaining
    return slots[:n], list(values[remaining : remaining + n])


def fast_first_string(
    chunk_ts: list[int], chunk_values: list[str], series_start: int
) -> tuple[int, str]:
    """``select first() from <string series>`` without a time range or window.

    SiriDB then reads only the chunk holding the series' first point, up to
    ``series_start + 1``, through :func:`read_string_chunk`; a compressed first chunk
    gives its string at position len(chunk) - (points at the first timestamp).
    """
    got_ts, got_vals = read_string_chunk(chunk_ts, chunk_values, end=series_start + 1)
    return got_ts[0], got_vals[0]


def fast_last_string(
    chunk_ts: list[int], chunk_values: list[str], series_end: int
) -> tuple[int, str]:
    """``select last() from <string series>`` without a time range or window.

    SiriDB reads the chunk holding the last point from ``series_end`` on and keeps the
    first point read; for a compressed chunk that value is the chunk's first string.
    """
    got_ts, got_vals = read_string_chunk(chunk_ts, chunk_values, start=series_end)
    return got_ts[0], got_vals[0]
