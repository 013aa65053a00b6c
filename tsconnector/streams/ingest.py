"""Points given to ``Stream.insert``, normalised to database units and float64 values.

Accepted: a sequence of ``(time, value)`` pairs (``RawPoint`` too), a ``(times, values)``
pair of numpy arrays, a pandas ``Series`` (its index gives the times) or a pandas
``DataFrame`` with ``time`` and ``value`` columns. Times are int nanoseconds, ``datetime``
(naive = UTC), ``numpy.datetime64`` or pandas timestamps; a time that is not a whole
number of database units raises ``ValueError`` (nothing is rounded on the write path).

Merge policies (BTrDB's names): ``never`` stores every point, duplicates included, as
SiriDB does; ``retain`` drops new points at a time that already holds one, and ``equal``
drops new points equal in time and value to a stored one. Both read the stored points
of the batch's time range first, so they are exact for one writer per stream at a time,
not against a concurrent writer. ``replace`` needs a delete that SiriDB lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..timeutil import INT64_MAX, INT64_MIN, NS_PER_UNIT, datetime64_to_db, precision_name
from .errors import NotSupportedError
from .timeargs import to_nanoseconds

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["MERGE_POLICIES", "apply_merge", "check_merge", "normalize_points"]

MERGE_POLICIES = ("never", "retain", "equal")


def check_merge(merge: str) -> None:
    """Refuse a merge policy this layer cannot honour, saying why."""
    if merge == "replace":
        raise NotSupportedError(
            "merge='replace' needs to delete the stored point at a time, and a SiriDB "
            "server cannot delete points (only whole series); use 'never', 'retain' or 'equal'"
        )
    if merge not in MERGE_POLICIES:
        raise ValueError(f"merge must be one of {MERGE_POLICIES} (or 'replace'), not {merge!r}")


def _module(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def _ns_to_units(ns: NDArray[np.int64], precision: int) -> NDArray[np.int64]:
    unit = NS_PER_UNIT[precision]
    if unit == 1:
        return ns
    units, rest = np.divmod(ns, unit)
    if rest.any():
        bad = int(ns[int(np.flatnonzero(rest)[0])])
        raise ValueError(
            f"time {bad} ns is not a whole number of the database unit "
            f"({precision_name(precision)}); nothing was inserted"
        )
    return units


def _times(times: Any, precision: int) -> NDArray[np.int64]:
    arr = np.asarray(times)
    if arr.ndim != 1:
        raise ValueError("times must be one-dimensional")
    if arr.dtype.kind == "M":
        return datetime64_to_db(arr, precision)
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > INT64_MAX:
            raise OverflowError("a time does not fit in a signed 64-bit integer")
        return _ns_to_units(arr.astype(np.int64), precision)
    if arr.dtype.kind == "O" or arr.size == 0:
        ns = [to_nanoseconds(t) for t in arr.tolist()]
        for t in ns:
            if not INT64_MIN <= t <= INT64_MAX:
                raise OverflowError(f"time {t} does not fit in a signed 64-bit integer")
        return _ns_to_units(np.array(ns, dtype=np.int64), precision)
    raise TypeError(f"times must be int nanoseconds or datetimes, not dtype {arr.dtype}")


def _values(values: Any) -> NDArray[np.float64]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError("values must be one-dimensional")
    if arr.dtype.kind == "b":
        raise TypeError("values must be numbers, not bool")
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64, copy=False)
    if arr.dtype.kind == "O" or arr.size == 0:
        for v in arr.tolist():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"values must be numbers, got {v!r}")
        return arr.astype(np.float64)
    raise TypeError(f"values must be numbers, not dtype {arr.dtype}")


def normalize_points(points: Any, precision: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """``(times in database units, float64 values)`` of any accepted form of points."""
    mod = _module(points)
    if mod == "pandas" and hasattr(points, "columns"):
        missing = {"time", "value"} - set(points.columns)
        if missing:
            raise ValueError("a DataFrame of points needs 'time' and 'value' columns")
        return _times(_pandas_times(points["time"]), precision), _values(points["value"])
    if mod == "pandas" and hasattr(points, "index"):
        return _times(_pandas_times(points.index), precision), _values(points.to_numpy())
    if (
        isinstance(points, tuple)
        and len(points) == 2
        and all(_module(p) in ("numpy", "pandas") for p in points)
    ):
        ts, values = _times(_pandas_times(points[0]), precision), _values(points[1])
        if len(ts) != len(values):
            raise ValueError(f"{len(ts)} times but {len(values)} values")
        return ts, values
    if mod == "numpy" and getattr(points, "ndim", 0) == 2 and points.shape[1] == 2:
        return _times(points[:, 0].astype(np.int64), precision), _values(points[:, 1])
    if isinstance(points, Sequence) and not isinstance(points, (str, bytes)):
        times: list[Any] = []
        vals: list[Any] = []
        for point in points:
            if not isinstance(point, Sequence) or len(point) != 2:
                raise ValueError(f"a point is a (time, value) pair, got {point!r}")
            times.append(point[0])
            vals.append(point[1])
        if all(type(t) is int for t in times):
            ts_arr: Any = np.array(times, dtype=np.int64)  # OverflowError beyond int64
        else:
            ts_arr = np.array(times, dtype=object)
        return _times(ts_arr, precision), _values(np.array(vals, dtype=object))
    raise TypeError(
        "points must be (time, value) pairs, a (times, values) pair of arrays, a pandas "
        f"Series or a DataFrame with time and value columns, not {type(points).__name__}"
    )


def _pandas_times(times: Any) -> Any:
    """pandas datetimes with a timezone as naive UTC datetime64; anything else unchanged."""
    if _module(times) != "pandas":
        return times
    tz = getattr(getattr(times, "dt", times), "tz", None)
    if tz is not None:
        times = times.tz_convert("UTC").tz_localize(None) if not hasattr(times, "dt") else (
            times.dt.tz_convert("UTC").dt.tz_localize(None)
        )
    return times.to_numpy()


def apply_merge(
    merge: str,
    ts: NDArray[np.int64],
    values: NDArray[np.float64],
    stored_ts: NDArray[np.int64],
    stored_values: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The new points left after ``merge`` against the stored ones (and each other)."""
    if merge == "never" or len(ts) == 0:
        return ts, values
    if merge == "retain":
        seen = set(stored_ts.tolist())
        keep = []
        for i, t in enumerate(ts.tolist()):
            if t not in seen:
                seen.add(t)
                keep.append(i)
    else:  # equal: same time and the same float64 bits
        seen_pairs = set(zip(stored_ts.tolist(), stored_values.view(np.int64).tolist()))
        keep = []
        for i, pair in enumerate(zip(ts.tolist(), values.view(np.int64).tolist())):
            if pair not in seen_pairs:
                seen_pairs.add(pair)
                keep.append(i)
    index = np.array(keep, dtype=np.int64)
    return ts[index], values[index]
