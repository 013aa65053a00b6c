"""Exact time conversion between Python/numpy times and database units (s, ms, us, ns).

All arithmetic is on integers (never floats), so every conversion is exact or raises.
A value finer than the database unit raises ``ValueError`` unless a rounding mode is
given: ``"ceil"`` is right for range bounds (``after``, ``before``, ``between``),
``"floor"`` truncates towards the past, ``"exact"`` (the default) refuses to round.
"""

from __future__ import annotations

import datetime as _dt
from math import gcd
from typing import TYPE_CHECKING, Any, Literal

from .protocol.constants import PRECISION_NAMES, UNITS_PER_SECOND

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "EPOCH",
    "INT64_MAX",
    "INT64_MIN",
    "NS_PER_UNIT",
    "Rounding",
    "datetime64_to_db",
    "from_db_time",
    "parse_precision",
    "precision_name",
    "rescale",
    "timedelta_to_db",
    "to_datetime64",
    "to_db_time",
    "to_ns",
]

Rounding = Literal["exact", "ceil", "floor"]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

#: Timezone-aware Unix epoch; naive datetimes are read as UTC.
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

#: Nanoseconds in one database unit, indexed by precision code.
NS_PER_UNIT: tuple[int, ...] = tuple(10**9 // ups for ups in UNITS_PER_SECOND)

_ROUNDINGS = ("exact", "ceil", "floor")

# numpy datetime64 units, expressed as (numerator, denominator) seconds per unit.
_NP_UNIT_SECONDS: dict[str, tuple[int, int]] = {
    "W": (7 * 86400, 1),
    "D": (86400, 1),
    "h": (3600, 1),
    "m": (60, 1),
    "s": (1, 1),
    "ms": (1, 10**3),
    "us": (1, 10**6),
    "μs": (1, 10**6),
    "ns": (1, 10**9),
    "ps": (1, 10**12),
    "fs": (1, 10**15),
    "as": (1, 10**18),
}


def parse_precision(precision: int | str | None, default: int | None = None) -> int:
    """Return the precision code 0..3 for ``0..3`` or ``"s"``/``"ms"``/``"us"``/``"ns"``."""
    if precision is None:
        if default is None:
            raise TypeError("a time precision is required (0..3 or 's', 'ms', 'us', 'ns')")
        return default
    if isinstance(precision, bool):
        raise TypeError(f"invalid time precision {precision!r}")
    if isinstance(precision, int):
        if 0 <= precision <= 3:
            return int(precision)
        raise ValueError(f"time precision must be 0..3, got {precision}")
    if isinstance(precision, str):
        try:
            return PRECISION_NAMES.index(precision.strip().lower())
        except ValueError:
            raise ValueError(
                f"unknown time precision {precision!r} (expected 's', 'ms', 'us' or 'ns')"
            ) from None
    raise TypeError(f"invalid time precision {precision!r}")


def precision_name(precision: int | str) -> str:
    """Return SiriDB's name of a precision (``"s"``, ``"ms"``, ``"us"``, ``"ns"``)."""
    return PRECISION_NAMES[parse_precision(precision)]


def rescale(num: int, den: int, rounding: Rounding = "exact", what: object = None) -> int:
    """Return ``num / den`` as an integer, exactly or rounded as asked (``den > 0``)."""
    if rounding not in _ROUNDINGS:
        raise ValueError(f"rounding must be one of {_ROUNDINGS}, got {rounding!r}")
    q, r = divmod(num, den)
    if r:
        if rounding == "exact":
            shown = num if what is None else what
            raise ValueError(
                f"{shown!r} is not a whole number of database units; pass "
                "rounding='ceil' or rounding='floor' to round it"
            )
        if rounding == "ceil":
            q += 1
    return q


def _check_int64(value: int, what: object) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError(f"time {what!r} does not fit in a signed 64-bit integer")
    return value


def _datetime_us(value: _dt.datetime) -> int:
    """Microseconds since the epoch (naive = UTC), exact."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def is_datetime64(value: Any) -> bool:
    """Whether ``value`` is a numpy datetime64 scalar (checked without importing numpy)."""
    return type(value).__name__ == "datetime64" and type(value).__module__ == "numpy"


def _datetime64_parts(value: Any) -> tuple[int, int, int]:
    """Return ``(count, num, den)``: the value is ``count * num / den`` seconds."""
    import numpy as np

    if np.isnat(value):
        raise ValueError("NaT is not a time")
    unit, step = np.datetime_data(value.dtype)
    if unit in ("Y", "M"):  # calendar units: go through days, which is exact
        value = value.astype("datetime64[D]")
        unit, step = "D", 1
    if unit == "generic":
        raise ValueError(f"{value!r} has no time unit")
    num, den = _NP_UNIT_SECONDS[unit]
    return int(value.astype(np.int64)), num * step, den


def to_ns(value: Any, precision: int | str | None = None, *, rounding: Rounding = "exact") -> int:
    """Return nanoseconds since the epoch as a Python int, exactly.

    ``value`` is a ``datetime`` (naive = UTC), ``date`` (midnight UTC), ``numpy.datetime64``
    or an integer in database units of ``precision`` (integers need ``precision``).
    Sub-nanosecond ``datetime64`` values (ps, fs, as) follow ``rounding``.
    """
    if isinstance(value, bool):
        raise TypeError(f"expected a time, got {value!r}")
    if isinstance(value, int) or _is_numpy_integer(value):
        p = parse_precision(precision)
        return int(value) * NS_PER_UNIT[p]
    if isinstance(value, _dt.datetime):
        return _datetime_us(value) * 1000
    if isinstance(value, _dt.date):
        return (value - _dt.date(1970, 1, 1)).days * 86400 * 10**9
    if is_datetime64(value):
        count, num, den = _datetime64_parts(value)
        return rescale(count * num * 10**9, den, rounding, value)
    raise TypeError(f"expected a datetime, date, numpy.datetime64 or int, got {value!r}")


def _is_numpy_integer(value: Any) -> bool:
    tp = type(value)
    if tp.__module__ != "numpy":
        return False
    import numpy as np

    return isinstance(value, np.integer)


def to_db_time(value: Any, precision: int | str, *, rounding: Rounding = "exact") -> int:
    """Convert a time to an integer in database units of ``precision``, exactly.

    ``value``: ``datetime`` (naive = UTC, aware converted), ``date`` (midnight UTC),
    ``numpy.datetime64`` (any unit), or ``int`` nanoseconds since the epoch. A value
    finer than the unit raises ``ValueError`` unless ``rounding`` is ``"ceil"`` or
    ``"floor"``; a result outside int64 raises ``OverflowError``.
    """
    p = parse_precision(precision)
    ups = UNITS_PER_SECOND[p]
    if isinstance(value, bool):
        raise TypeError(f"expected a time, got {value!r}")
    if isinstance(value, int) or _is_numpy_integer(value):
        result = rescale(int(value), NS_PER_UNIT[p], rounding, value)
    elif isinstance(value, _dt.datetime):
        result = rescale(_datetime_us(value) * ups, 1_000_000, rounding, value)
    elif isinstance(value, _dt.date):
        result = (value - _dt.date(1970, 1, 1)).days * 86400 * ups
    elif is_datetime64(value):
        count, num, den = _datetime64_parts(value)
        result = rescale(count * num * ups, den, rounding, value)
    else:
        raise TypeError(
            f"expected a datetime, date, numpy.datetime64 or int nanoseconds, got {value!r}"
        )
    return _check_int64(result, value)


def from_db_time(ts: int, precision: int | str, *, rounding: Rounding = "floor") -> _dt.datetime:
    """Convert database units to a UTC-aware ``datetime``.

    ``datetime`` holds microseconds: finer ns values are floored by default, or raise
    with ``rounding="exact"``. Times outside years 1..9999 raise ``OverflowError``.
    """
    if isinstance(ts, bool) or not (isinstance(ts, int) or _is_numpy_integer(ts)):
        raise TypeError(f"expected an integer timestamp, got {ts!r}")
    p = parse_precision(precision)
    us = rescale(int(ts) * 1_000_000, UNITS_PER_SECOND[p], rounding, ts)
    try:
        return EPOCH + _dt.timedelta(microseconds=us)
    except OverflowError:
        raise OverflowError(f"timestamp {ts} is outside the range of datetime") from None


def to_datetime64(ts: int, precision: int | str) -> np.datetime64:
    """Return ``numpy.datetime64`` in the database unit, exactly.

    Every int64 except the smallest, which numpy reserves for NaT (``ValueError``).
    """
    import numpy as np

    p = parse_precision(precision)
    if isinstance(ts, bool):
        raise TypeError(f"expected an integer timestamp, got {ts!r}")
    if int(ts) == INT64_MIN:
        raise ValueError(f"timestamp {ts} is numpy's NaT and has no datetime64 value")
    return np.datetime64(_check_int64(int(ts), ts), PRECISION_NAMES[p])


def timedelta_to_db(
    value: _dt.timedelta, precision: int | str, *, rounding: Rounding = "exact"
) -> int:
    """Return a ``timedelta`` as an integer number of database units."""
    p = parse_precision(precision)
    us = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    return _check_int64(rescale(us * UNITS_PER_SECOND[p], 1_000_000, rounding, value), value)


def datetime64_to_db(
    values: np.ndarray, precision: int | str, *, rounding: Rounding = "exact"
) -> np.ndarray:
    """Convert a ``datetime64`` array to int64 database units, vectorised and exact.

    NaT raises ``ValueError``; sub-unit values follow ``rounding``; results outside
    int64 raise ``OverflowError``.
    """
    import numpy as np

    if rounding not in _ROUNDINGS:
        raise ValueError(f"rounding must be one of {_ROUNDINGS}, got {rounding!r}")
    p = parse_precision(precision)
    arr = np.asarray(values)
    if arr.dtype.kind != "M":
        raise TypeError(f"expected a datetime64 array, got dtype {arr.dtype}")
    unit, step = np.datetime_data(arr.dtype)
    if unit in ("Y", "M"):
        arr = arr.astype("datetime64[D]")
        unit, step = "D", 1
    if unit == "generic":
        raise ValueError("datetime64 array has no time unit")
    if arr.size and np.isnat(arr).any():
        raise ValueError("NaT is not a time")
    counts = arr.view(np.int64)
    fresh = False
    num, den = _NP_UNIT_SECONDS[unit]
    # result = counts * (num * step * ups) / den, reduced to a single multiply or divide
    mul = num * step * UNITS_PER_SECOND[p]
    g = gcd(mul, den)
    mul //= g
    den //= g
    if mul != 1:
        if counts.size:
            lo, hi = int(counts.min()), int(counts.max())
            if lo * mul < INT64_MIN or hi * mul > INT64_MAX:
                bad = lo if lo * mul < INT64_MIN else hi
                raise OverflowError(
                    f"time {arr.flat[int(np.argmax(counts == bad))]!r} does not fit in a "
                    "signed 64-bit integer in this precision"
                )
        counts = counts * mul
        fresh = True
    if den != 1:
        q, r = np.divmod(counts, den)
        if r.any():
            if rounding == "exact":
                first = int(np.flatnonzero(r)[0])
                raise ValueError(
                    f"{arr.flat[first]!r} is not a whole number of database units; pass "
                    "rounding='ceil' or rounding='floor' to round it"
                )
            if rounding == "ceil":
                q += r != 0
        counts = q
        fresh = True
    return np.ascontiguousarray(counts) if fresh else np.array(counts, dtype=np.int64)
