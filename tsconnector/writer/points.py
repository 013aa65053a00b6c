"""The writer's input: names and points checked at ``add`` time, held as *pieces*.

A piece is one series' points as either a numpy pair ``(int64 timestamps, values)``
(int64 or float64 values) or a list of ``(ts, value)`` pairs (strings, mixed values,
points added one at a time, unchecked lists). numpy and pandas input stays a numpy pair
end to end (checked, merged, spooled and packed vectorised: no Python work per point);
checked lists of numbers are turned into one at ``add`` time. Every check refuses what
the server would reject, so one bad point never sinks a batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..timeutil import INT64_MAX, INT64_MIN, datetime64_to_db

__all__ = [
    "NAME_BYTES_LIMIT",
    "Piece",
    "bounds",
    "check_point",
    "check_series_name",
    "count",
    "frame_items",
    "merge",
    "needs_precision",
    "normalize",
    "pairs",
    "points_of",
    "split",
    "value_key",
]

#: SiriDB refuses series names of this many bytes (UTF-8) or more.
NAME_BYTES_LIMIT = 65535

#: A numpy ``(timestamps, values)`` pair or a list of ``(ts, value)`` pairs.
Piece = Any


def check_series_name(series: Any) -> None:
    """A series name must be a non-empty str that UTF-8 can encode, under 65535 bytes."""
    if not isinstance(series, str) or not series:
        raise TypeError(f"series name must be a non-empty str, not {series!r}")
    if not series.isascii():
        try:
            size = len(series.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"series name {series!r} cannot be encoded as UTF-8 ({exc.reason} at "
                f"position {exc.start})"
            ) from None
    else:
        size = len(series)
    if size >= NAME_BYTES_LIMIT:
        raise ValueError(f"series name of {size} bytes is too long (SiriDB allows < 65535)")


def _check_text(series: str, value: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"series {series!r}: string value {value!r} cannot be encoded as UTF-8 "
                f"({exc.reason} at position {exc.start})"
            ) from None


def _check_list(series: str, points: list[Any]) -> tuple[Sequence[int], Sequence[Any], set[type]]:
    """Refuse what the server would reject; returns the timestamps, values and value types."""
    try:
        lengths = set(map(len, points))
    except TypeError:  # a point without a length (a number...)
        lengths = set()
    if lengths != {2}:
        bad = next(
            (p for p in points if not isinstance(p, (list, tuple)) or len(p) != 2), points[0]
        )
        raise ValueError(
            f"series {series!r}: every point must be a (timestamp, value) pair, got {bad!r}"
        )
    stamps, values = zip(*points)
    if not set(map(type, stamps)) <= {int}:
        raise TypeError(f"series {series!r}: timestamps must be int")
    if min(stamps) < 0 or max(stamps) > INT64_MAX:
        raise OverflowError(f"series {series!r}: timestamp out of range")
    kinds = set(map(type, values))
    if not kinds <= {int, float, str}:
        bad_kinds = sorted(k.__name__ for k in kinds - {int, float, str})
        raise TypeError(f"series {series!r}: unsupported value type(s) {', '.join(bad_kinds)}")
    if int in kinds:
        ints = [v for v in values if type(v) is int] if len(kinds) > 1 else values
        if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
            raise OverflowError(f"series {series!r}: integer value out of int64 range")
    if str in kinds:
        for value in values:
            if type(value) is str:
                _check_text(series, value)
    return stamps, values, kinds


def check_point(series: Any, ts: Any, value: Any) -> None:
    """The checks of a list of points for one point, without building lists."""
    if type(series) is not str or not series.isascii() or not 0 < len(series) < NAME_BYTES_LIMIT:
        check_series_name(series)
    if type(ts) is not int:
        raise TypeError(f"series {series!r}: timestamps must be int")
    if not 0 <= ts <= INT64_MAX:
        raise OverflowError(f"series {series!r}: timestamp out of range")
    kind = type(value)
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise OverflowError(f"series {series!r}: integer value out of int64 range")
    elif kind is str:
        _check_text(series, value)
    elif kind is not float:
        raise TypeError(f"series {series!r}: unsupported value type {kind.__name__}")


def _numpy_points(series: str, ts: Any, values: Any, precision: int | None) -> Piece:
    """Copies of numpy ``(timestamps, values)`` in wire-friendly dtypes (or pairs for text)."""
    import numpy as np

    ts = np.asarray(ts)
    values = np.asarray(values)
    if ts.ndim != 1 or values.shape != ts.shape:
        raise ValueError(f"series {series!r}: timestamps and values must be 1-d, same length")
    if ts.dtype.kind == "M":
        if precision is None:
            raise TypeError(f"series {series!r}: datetime timestamps need the precision")
        ts = datetime64_to_db(ts, precision)
    if ts.dtype.kind not in "iu":
        raise TypeError(f"series {series!r}: timestamps must be an integer array")
    if len(ts) and (int(ts.min()) < 0 or int(ts.max()) > INT64_MAX):
        raise OverflowError(f"series {series!r}: timestamp out of range")
    ts = ts.astype(np.int64, copy=True)
    kind = values.dtype.kind
    if kind == "f":
        return ts, values.astype(np.float64, copy=True)
    if kind in "iu":
        if len(values) and int(values.max()) > INT64_MAX:
            raise OverflowError(f"series {series!r}: integer value out of int64 range")
        return ts, values.astype(np.int64, copy=True)
    if kind in "UO":
        listed = list(zip(ts.tolist(), values.tolist()))
        _check_list(series, listed)
        return listed
    raise TypeError(f"series {series!r}: unsupported value dtype {values.dtype}")


def _is_numpy_pair(points: Any) -> bool:
    return (
        isinstance(points, tuple)
        and len(points) == 2
        and hasattr(points[0], "dtype")
        and hasattr(points[1], "dtype")
    )


def _is_pandas_series(points: Any) -> bool:
    return (
        type(points).__module__.partition(".")[0] == "pandas"
        and hasattr(points, "index")
        and not hasattr(points, "columns")
    )


def _index_values(index: Any) -> Any:
    """A pandas index as a numpy array (time zones converted to naive UTC)."""
    if getattr(index, "tz", None) is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.to_numpy()


def needs_precision(data: Any) -> bool:
    """True when ``data`` (an ``add_many`` argument) has datetime timestamps."""
    if hasattr(data, "columns") and hasattr(data, "index"):
        return str(getattr(data.index, "dtype", "")).startswith("datetime64")
    for points in data.values():
        if _is_pandas_series(points):
            if str(getattr(points.index, "dtype", "")).startswith("datetime64"):
                return True
        elif _is_numpy_pair(points) and points[0].dtype.kind == "M":
            return True
    return False


def frame_items(frame: Any) -> list[tuple[str, Any]]:
    """A pandas DataFrame as ``(column name, (timestamps, values))`` per column; missing
    cells (NaN/NA) are skipped, since a wide frame marks absent points that way."""
    import numpy as np

    ts = _index_values(frame.index)
    items = []
    for position, name in enumerate(frame.columns):
        if not isinstance(name, str):
            raise TypeError(f"DataFrame column names must be strings, got {name!r}")
        column = frame.iloc[:, position]
        mask = np.asarray(column.notna().to_numpy(), dtype=bool)
        values = column.to_numpy()
        if not mask.all():
            items.append((name, (ts[mask], values[mask])))
        else:
            items.append((name, (ts, values)))
    return items


def normalize(series: Any, points: Any, validate: bool, precision: int | None = None) -> tuple[
    Piece, int
]:
    """``(piece, count)``: the writer's own copy of one series' points."""
    check_series_name(series)
    if _is_numpy_pair(points):
        piece: Piece = _numpy_points(series, points[0], points[1], precision)
    elif _is_pandas_series(points):
        values = points.to_numpy()
        if values.dtype.kind == "O" and points.isna().any():
            raise TypeError(f"series {series!r}: missing values (NA) cannot be inserted")
        piece = _numpy_points(series, _index_values(points.index), values, precision)
    elif hasattr(points, "ndim") and getattr(points, "ndim", 0) == 2:
        if points.shape[1] != 2:
            raise ValueError(f"series {series!r}: a points array must have shape (n, 2)")
        piece = _numpy_points(series, points[:, 0], points[:, 1], precision)
    else:
        piece = list(points)
        if validate and piece:
            stamps, values, kinds = _check_list(series, piece)
            if kinds == {float} or kinds == {int}:
                import numpy as np

                piece = (
                    np.array(stamps, dtype=np.int64),
                    np.array(values, dtype=np.float64 if float in kinds else np.int64),
                )
    return piece, count(piece)


def count(piece: Piece) -> int:
    """Points in a piece."""
    return len(piece[0]) if isinstance(piece, tuple) else len(piece)


def points_of(data: Mapping[str, Piece]) -> int:
    """Points in ``{series: piece}``."""
    return sum(len(p[0]) if isinstance(p, tuple) else len(p) for p in data.values())


def split(piece: Piece, k: int) -> tuple[Piece, Piece]:
    """The first ``k`` points of a piece and the rest."""
    if isinstance(piece, tuple):
        return (piece[0][:k], piece[1][:k]), (piece[0][k:], piece[1][k:])
    return piece[:k], piece[k:]


def merge(parts: list[Piece]) -> Piece:
    """One series' pieces as one piece (numpy pairs stay numpy when their kinds agree)."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, tuple) for p in parts):
        kinds = {p[1].dtype.kind for p in parts}
        if len(kinds) == 1:
            import numpy as np

            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    merged: list[Any] = []
    for part in parts:
        merged.extend(pairs(part))
    return merged


def pairs(piece: Piece) -> list[Any]:
    """A piece as a list of ``(ts, value)`` pairs."""
    if isinstance(piece, tuple):
        return list(zip(piece[0].tolist(), piece[1].tolist()))
    return piece if isinstance(piece, list) else list(piece)


def bounds(piece: Piece) -> tuple[int, int]:
    """The first and last timestamp of a piece."""
    if isinstance(piece, tuple):
        return int(piece[0].min()), int(piece[0].max())
    stamps = [p[0] for p in piece]
    return min(stamps), max(stamps)


def value_key(value: Any) -> Any:
    """A comparable key for a stored value (NaN equals NaN here)."""
    if isinstance(value, float) and value != value:
        return ("nan",)
    return value
