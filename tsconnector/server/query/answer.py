"""Large select answers kept as columns until they are packed.

A select of millions of points would otherwise build one ``[ts, value]`` list per point
(about 100 bytes each, and garbage-collector passes over all of them) before a byte is
sent. :class:`PointColumns` keeps the time-stamps and values as they were read and hands
them out in chunks, so the server packs the answer chunk by chunk and lets other clients
run in between (see :func:`is_large_answer`). It still reads as a list of points.
Columns of a numeric series read as numpy arrays are packed vectorised, chunk by chunk,
into the same bytes (:func:`~tsconnector.server.pointpack.pack_point_columns`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np

from tsconnector.server.pointpack import pack_point_columns
from tsconnector.server.query.precision import scale_timestamp

__all__ = ["CHUNK_POINTS", "LARGE_ANSWER_POINTS", "PointColumns", "is_large_answer"]

#: A series answer with more points than this is kept as :class:`PointColumns`.
LARGE_ANSWER_POINTS = 65_536
#: Points per chunk handed to the packer (and between two turns of other clients).
CHUNK_POINTS = 65_536


class PointColumns(Sequence[list[Any]]):
    """The points of one series answer as two columns; ``factor`` (a query's other
    time precision) is applied as each point is handed out."""

    __slots__ = ("_factor", "_ts", "_values")

    def __init__(self, ts: Sequence[int], values: Sequence[Any], factor: float | None) -> None:
        self._ts = ts  # lists, or int64 / int64-float64 numpy arrays
        self._values = values
        self._factor = factor

    def __len__(self) -> int:
        return len(self._ts)

    @overload
    def __getitem__(self, index: int) -> list[Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[list[Any]]: ...

    def __getitem__(self, index: int | slice) -> list[Any] | list[list[Any]]:
        if isinstance(index, slice):
            return self._points(self._ts[index], self._values[index])
        i = index + len(self._ts) if index < 0 else index
        if not 0 <= i < len(self._ts):
            raise IndexError(index)
        return self._points(self._ts[i : i + 1], self._values[i : i + 1])[0]

    def __iter__(self) -> Iterator[list[Any]]:
        for chunk in self.chunks():
            yield from chunk

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PointColumns):
            other = list(other)
        if not isinstance(other, list) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PointColumns({len(self)} points)"

    def chunks(self, size: int = CHUNK_POINTS) -> Iterator[list[list[Any]]]:
        """The points as lists of at most ``size`` ``[ts, value]`` lists, in order."""
        for chunk_ts, chunk_values in self._slices(size):
            yield self._points(chunk_ts, chunk_values)

    def packed_chunks(
        self, pack: Callable[[list[list[Any]]], bytes], size: int = CHUNK_POINTS
    ) -> Iterator[tuple[int, bytes]]:
        """``(points, pack(chunk))`` for each chunk of :meth:`chunks`. A chunk's lists
        are made, packed and freed with the cyclic garbage collector paused: tens of
        thousands of new lists would start its passes over every live object again and
        again (eight times the work), and none of them can be part of a cycle."""
        if self._factor is None and isinstance(self._values, np.ndarray):
            for chunk_ts, chunk_values in self._slices(size):
                yield len(chunk_ts), pack_point_columns(chunk_ts, chunk_values)
            return
        for chunk_ts, chunk_values in self._slices(size):
            enabled = gc.isenabled()
            gc.disable()
            try:
                chunk = self._points(chunk_ts, chunk_values)
                packed = pack(chunk)
                del chunk
            finally:
                if enabled:
                    gc.enable()
            yield len(chunk_ts), packed

    def _slices(self, size: int) -> Iterator[tuple[Any, Any]]:
        ts, values = self._ts, self._values
        for start in range(0, len(ts), size):
            yield ts[start:start + size], values[start:start + size]

    def _points(self, ts: Sequence[int], values: Sequence[Any]) -> list[list[Any]]:
        if isinstance(ts, np.ndarray):
            ts = ts.tolist()
        if isinstance(values, np.ndarray):
            values = values.tolist()
        factor = self._factor
        if factor is None:
            return list(map(list, zip(ts, values)))
        return [[scale_timestamp(t, factor), v] for t, v in zip(ts, values)]


def is_large_answer(answer: Any) -> bool:
    """Whether ``answer`` holds a :class:`PointColumns` (to be packed in turns)."""
    return isinstance(answer, Mapping) and any(
        type(value) is PointColumns for value in answer.values())
