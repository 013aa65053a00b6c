"""Large select answers kept as columns until they are packed.

A select of millions of points would otherwise build one ``[ts, value]`` list per point
(about 100 bytes each, and garbage-collector passes over all of them) before a byte is
sent. :class:`PointColumns` keeps the time-stamps and values as they were read and hands
them out in chunks, so the server packs the answer chunk by chunk and lets other clients
run in between (see :func:`is_large_answer`). It still reads as a list of points.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

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

    def __init__(self, ts: list[int], values: list[Any], factor: float | None) -> None:
        self._ts = ts
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
        return [scale_timestamp(self._ts[index], self._factor), self._values[index]]

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

    def _slices(self, size: int) -> Iterator[tuple[list[int], list[Any]]]:
        ts, values = self._ts, self._values
        for start in range(0, len(ts), size):
            yield ts[start:start + size], values[start:start + size]

    def _points(self, ts: list[int], values: list[Any]) -> list[list[Any]]:
        factor = self._factor
        if factor is None:
            return list(map(list, zip(ts, values)))
        return [[scale_timestamp(t, factor), v] for t, v in zip(ts, values)]


def is_large_answer(answer: Any) -> bool:
    """Whether ``answer`` holds a :class:`PointColumns` (to be packed in turns)."""
    return isinstance(answer, Mapping) and any(
        type(value) is PointColumns for value in answer.values())
