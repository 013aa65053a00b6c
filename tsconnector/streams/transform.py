"""Exports of a StreamSet's data: aligned rows, numpy arrays, pandas frames, CSV.

Kept apart from the data objects (BTrDB's ``transformers`` module plays this part).
Each stream's data is a column: raw points as ``(times_ns, values)`` arrays, or windows
as :class:`~.windows.WindowStats`. Columns are aligned on time by an outer join; a
stream with several points at one time (SiriDB keeps duplicates) fills as many rows
for that time. pandas is imported only by :func:`to_dataframe` (extra ``pandas``).
"""

from __future__ import annotations

import csv
import importlib
import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

import numpy as np

from ..protocol.answers import gc_paused
from .points import RawPoint, StatPoint
from .windows import WindowStats

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "STATS",
    "Column",
    "align",
    "column_points",
    "raw_points",
    "rows",
    "to_dataframe",
    "write_csv",
]

Column: TypeAlias = "tuple[NDArray[Any], NDArray[np.float64]] | WindowStats"

STATS = ("min", "mean", "max", "count", "stddev")


def column_times(column: Column) -> NDArray[Any]:
    """The times (ns) of a column."""
    return column.time if isinstance(column, WindowStats) else column[0]


def column_points(column: Column) -> list[RawPoint] | list[StatPoint]:
    """A column as point objects."""
    if isinstance(column, WindowStats):
        return column.points()
    return raw_points(column[0], column[1])


def raw_points(times: NDArray[Any], values: NDArray[Any]) -> list[RawPoint]:
    """Arrays as a list of :class:`RawPoint` (built with the garbage collector paused,
    which makes a million points about twice as fast)."""
    new = tuple.__new__
    with gc_paused():
        return [new(RawPoint, pair) for pair in zip(times.tolist(), values.tolist())]


def column_values(column: Column, agg: str) -> NDArray[Any]:
    """Values of a raw column, or one statistic of a window column."""
    return column.column(agg) if isinstance(column, WindowStats) else column[1]


def _occurrences(times: NDArray[Any]) -> NDArray[np.int64]:
    """For each time, how many earlier entries hold the same time (0 without duplicates)."""
    n = len(times)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    new_run = np.concatenate(([True], times[1:] != times[:-1]))
    starts = np.flatnonzero(new_run)
    first = np.repeat(starts, np.diff(np.append(starts, n)))
    result: NDArray[np.int64] = np.arange(n, dtype=np.int64) - first
    return result


def align(columns: Sequence[Column]) -> tuple[NDArray[Any], list[NDArray[np.int64]]]:
    """``(times of the rows, row index of every entry of each column)``: an outer join."""
    times = [np.asarray(column_times(c)) for c in columns]
    if not times or all(len(t) == 0 for t in times):
        return np.zeros(0, dtype=np.int64), [np.zeros(0, dtype=np.int64) for _ in columns]
    if any(t.dtype == object for t in times):  # beyond int64 ns: plain Python ordering
        ordered = sorted(
            {(int(t), int(o)) for col in times for t, o in zip(col, _occurrences(col))}
        )
        where = {key: i for i, key in enumerate(ordered)}
        rows_of = [
            np.array(
                [where[(int(t), int(o))] for t, o in zip(col, _occurrences(col))], dtype=np.int64
            )
            for col in times
        ]
        return np.array([k[0] for k in ordered], dtype=object), rows_of
    all_times = np.concatenate(times).astype(np.int64)
    occurrences = np.concatenate([_occurrences(t) for t in times])
    if not occurrences.any():
        union, inverse = np.unique(all_times, return_inverse=True)
    else:
        keys = np.empty(len(all_times), dtype=[("t", np.int64), ("o", np.int64)])
        keys["t"], keys["o"] = all_times, occurrences
        unique_keys, inverse = np.unique(keys, return_inverse=True)
        union = unique_keys["t"]
    inverse = inverse.reshape(-1).astype(np.int64)
    offsets = np.cumsum([0, *(len(t) for t in times)])
    return union, [inverse[offsets[i] : offsets[i + 1]] for i in range(len(times))]


def rows(columns: Sequence[Column]) -> list[tuple[RawPoint | StatPoint | None, ...]]:
    """One tuple per row time: each stream's point at that time, or ``None``."""
    union, positions = align(columns)
    table: list[list[Any]] = [[None] * len(columns) for _ in range(len(union))]
    for j, (column, pos) in enumerate(zip(columns, positions)):
        for i, point in zip(pos.tolist(), column_points(column)):
            table[i][j] = point
    return [tuple(row) for row in table]


def _filled(length: int, pos: NDArray[np.int64], values: NDArray[Any]) -> NDArray[np.float64]:
    out = np.full(length, np.nan, dtype=np.float64)
    out[pos] = values
    return out


def to_dataframe(
    columns: Sequence[Column],
    names: Sequence[str],
    *,
    agg: str = "mean",
    datetime64_index: bool = True,
) -> Any:  # a pandas.DataFrame (pandas is optional)
    """A wide frame: one column per stream (``agg="all"``: one per stream and statistic)."""
    try:
        pd = importlib.import_module("pandas")  # optional: the extra 'pandas'
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImportError(
            "to_dataframe needs pandas: pip install 'tsconnector[pandas]'"
        ) from None
    union, positions = align(columns)
    data: dict[Any, NDArray[Any]] = {}
    windowed = any(isinstance(c, WindowStats) for c in columns)
    for name, column, pos in zip(names, columns, positions):
        if agg == "all" and windowed:
            for stat in STATS:
                data[(name, stat)] = _filled(len(union), pos, column_values(column, stat))
        else:
            data[name] = _filled(len(union), pos, column_values(column, agg))
    index: Any
    if datetime64_index and union.dtype != object:
        index = pd.DatetimeIndex(union.astype("datetime64[ns]"), name="time").tz_localize("UTC")
    else:
        index = pd.Index(union, name="time")
    frame = pd.DataFrame(data, index=index)
    if agg == "all" and windowed:
        frame.columns = pd.MultiIndex.from_tuples(list(data), names=["stream", "stat"])
    return frame


def write_csv(
    file: str | os.PathLike[str] | TextIO,
    columns: Sequence[Column],
    names: Sequence[str],
    *,
    agg: str = "mean",
) -> None:
    """Rows aligned on time: ``time`` (ns), then one value per stream (empty in a hole)."""
    union, positions = align(columns)
    windowed = any(isinstance(c, WindowStats) for c in columns)
    header = ["time"]
    cells: list[list[Any]] = []
    for name, column, pos in zip(names, columns, positions):
        stats = STATS if agg == "all" and windowed else (agg,)
        for stat in stats:
            header.append(f"{name}/{stat}" if len(stats) > 1 else name)
            col: list[Any] = [""] * len(union)
            for i, value in zip(pos.tolist(), column_values(column, stat).tolist()):
                col[i] = repr(value) if isinstance(value, float) else value
            cells.append(col)
    if isinstance(file, (str, os.PathLike)):
        with open(file, "w", newline="", encoding="utf-8") as handle:
            _write(handle, header, union, cells)
    else:
        _write(file, header, union, cells)


def _write(
    handle: TextIO | io.StringIO, header: list[str], union: Any, cells: list[list[Any]]
) -> None:
    writer = csv.writer(handle)
    writer.writerow(header)
    for i, t in enumerate(union.tolist()):
        writer.writerow([t, *(col[i] for col in cells)])
