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

import qpack

from ..protocol.packer import PrecisionRequired, point_timestamp
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
    if type(series) is str and series.isascii() and 0 < len(series) < NAME_BYTES_LIMIT:
        return
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
        stamps, values = zip(*points, strict=True)
    except (TypeError, ValueError):  # not all pairs: find the first bad one
        bad = next(
            (p for p in points if not isinstance(p, (list, tuple)) or len(p) != 2), points[0]
        )
        raise ValueError(
            f"series {series!r}: every point must be a (timestamp, value) pair, got {bad!r}"
        ) from None
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


_INT_WIDTH = {0xE8: 1, 0xE9: 2, 0xEA: 4, 0xEB: 8}
_RECORDS: dict[tuple[int, int], Any] = {}


def _packed_columns(points: list[Any]) -> Piece | None:
    """Check and convert a list of points in C: qpack packs it, and when every point came
    out in one fixed-width layout ``[int, int]`` or ``[int, float]`` (what lists of
    numbers look like), the packed bytes are checked and read as numpy columns. None
    for anything else (small lists, strings, bools, mixed widths, -1.0/0.0/1.0 floats,
    which qpack writes as single bytes), which takes the exact path."""
    n = len(points)
    if n < 6:
        return None
    try:
        packed: bytes = qpack.packb(points)
    except Exception:
        return None
    ts_marker = packed[2]
    tw = _INT_WIDTH.get(ts_marker)
    if tw is None or len(packed) < 4 + tw:
        return None
    value_marker = packed[3 + tw]
    vw = 8 if value_marker == 0xEC else _INT_WIDTH.get(value_marker)
    if vw is None:
        return None
    stride = 3 + tw + vw
    if len(packed) != n * stride + 2 or packed[0] != 0xFC or packed[-1] != 0xFE:
        return None
    body = packed[1:-1]
    if (
        body[0::stride] != b"\xef" * n
        or body[1::stride] != bytes((ts_marker,)) * n
        or body[2 + tw :: stride] != bytes((value_marker,)) * n
    ):
        return None
    import numpy as np

    dtype = _RECORDS.get((ts_marker, value_marker))
    if dtype is None:
        dtype = _RECORDS[(ts_marker, value_marker)] = np.dtype({
            "names": ["ts", "value"],
            "formats": [f"<i{tw}", "<f8" if value_marker == 0xEC else f"<i{vw}"],
            "offsets": [2, 3 + tw],
            "itemsize": stride,
        })
    records = np.frombuffer(body, dtype=dtype, count=n)
    ts = records["ts"].astype(np.int64)
    if ts.min() < 0:
        return None  # the exact path raises the error
    return ts, records["value"].astype(np.float64 if value_marker == 0xEC else np.int64)


def _checked_columns(series: str, points: list[Any], precision: int | None) -> Piece:
    """A checked list of points: a numpy pair when its values are all int or all float
    (the common case, checked with numpy where it can), else the list itself. Timestamps
    that are not int (datetimes, numpy scalars) are converted as inserts convert them."""
    import numpy as np

    try:
        stamps, values = zip(*points, strict=True)
    except (TypeError, ValueError):
        _check_list(series, points)  # raises the error that names the bad point
        raise
    if not set(map(type, stamps)) <= {int}:
        stamps = tuple(
            ts if type(ts) is int else point_timestamp(series, ts, precision) for ts in stamps
        )
        points = list(zip(stamps, values))
    kinds = set(map(type, values))
    if len(kinds) != 1 or (float not in kinds and int not in kinds):
        _check_list(series, points)
        return points
    try:
        ts = np.array(stamps, dtype=np.int64)
        column = np.array(values, dtype=np.float64 if float in kinds else np.int64)
    except OverflowError:
        _check_list(series, points)  # raises the error that names what is out of range
        raise
    if int(ts.min()) < 0:
        raise OverflowError(f"series {series!r}: timestamp out of range")
    return ts, column


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
    """Copies of numpy ``(timestamps, values)`` in wire-friendly dtypes (or pairs for text).

    Checked with a few vectorised calls per series, never per point."""
    import numpy as np

    if type(ts) is not np.ndarray:
        ts = np.asarray(ts)
    if type(values) is not np.ndarray:
        values = np.asarray(values)
    if ts.ndim != 1 or values.shape != ts.shape:
        raise ValueError(f"series {series!r}: timestamps and values must be 1-d, same length")
    tkind = ts.dtype.kind
    if tkind == "M":
        if precision is None:
            raise PrecisionRequired(f"series {series!r}: datetime64 timestamps need precision")
        ts = datetime64_to_db(ts, precision)
        tkind = "i"
    elif tkind == "O":  # e.g. datetime objects: converted one by one, as inserts do
        ts = np.array([point_timestamp(series, t, precision) for t in ts.tolist()], np.int64)
        tkind = "i"
    if tkind not in "iu":
        raise TypeError(f"series {series!r}: timestamps must be an integer array")
    if len(ts) and (ts.min() < 0 or (tkind == "u" and int(ts.max()) > INT64_MAX)):
        raise OverflowError(f"series {series!r}: timestamp out of range")
    ts = ts.astype(np.int64)  # a copy: the caller may reuse its arrays
    kind = values.dtype.kind
    if kind == "f":
        return ts, values.astype(np.float64)
    if kind == "i":
        return ts, values.astype(np.int64)
    if kind == "u":
        if len(values) and int(values.max()) > INT64_MAX:
            raise OverflowError(f"series {series!r}: integer value out of int64 range")
        return ts, values.astype(np.int64)
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
    if type(points) is list:  # the common shapes first
        if not validate:
            piece: Piece = points[:]
        else:
            piece = _packed_columns(points)
            if piece is None:
                piece = _checked_columns(series, points[:], precision) if points else []
        return piece, count(piece)
    if _is_numpy_pair(points):
        piece = _numpy_points(series, points[0], points[1], precision)
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
            piece = _checked_columns(series, piece, precision)
    return piece, count(piece)


def count(piece: Piece) -> int:
    """Points in a piece."""
    return len(piece[0]) if type(piece) is tuple else len(piece)


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
