"""Points of one series as two numpy columns: what an insert carries from parse to storage.

An insert is decoded into :class:`Columns` per series (int64 timestamps in arrival order;
values as an int64 or float64 array, or an object array when the series mixes types or
holds strings), journaled as raw array bytes (:meth:`Columns.encode`, no per-point work)
and coerced into the series' type with vectorised numpy (:func:`coerce`), exactly as the
per-point rules of :func:`.model.coerce_value` do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .model import SeriesType, Value, coerce_value, type_of

__all__ = ["Columns", "coerce", "columns_from_points", "concat"]

INT64_MIN = -(2**63)
_TWO63 = float(2**63)
#: Journal encodings of a value column: raw little-endian int64 / float64, or a list.
KIND_INT, KIND_FLOAT, KIND_LIST = "i", "f", "o"


class Columns:
    """One series' points of one insert: ``ts`` (int64) and ``values``, in arrival order."""

    __slots__ = ("ts", "values")

    def __init__(self, ts: np.ndarray, values: np.ndarray) -> None:
        self.ts = ts
        self.values = values

    def __len__(self) -> int:
        return len(self.ts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Columns):
            return NotImplemented
        return self.points() == other.points()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Columns({self.points()!r})"

    @property
    def series_type(self) -> SeriesType:
        """The type a new series gets from these points (that of the first value)."""
        kind = self.values.dtype.kind
        if kind == "i":
            return "integer"
        if kind == "f":
            return "float"
        first: Value = self.values[0]
        return type_of(first)

    def points(self) -> list[list[Any]]:
        """The points as ``[[ts, value], ...]`` Python lists (tests, small answers)."""
        return [list(p) for p in zip(self.ts.tolist(), self.values.tolist())]

    def encode(self) -> list[Any]:
        """A msgpack-friendly journal form: ``[ts bytes, kind, values]`` (see :meth:`decode`)."""
        ts = self.ts.astype("<i8", copy=False).tobytes()
        kind = self.values.dtype.kind
        if kind == "i":
            return [ts, KIND_INT, self.values.astype("<i8", copy=False).tobytes()]
        if kind == "f":
            return [ts, KIND_FLOAT, self.values.astype("<f8", copy=False).tobytes()]
        return [ts, KIND_LIST, self.values.tolist()]

    @classmethod
    def decode(cls, data: Sequence[Any]) -> Columns:
        """The columns of an :meth:`encode` form; ``ValueError`` when it is not one."""
        raw_ts, kind, raw_values = data
        ts = np.frombuffer(raw_ts, dtype="<i8").astype(np.int64)
        if kind == KIND_INT:
            values = np.frombuffer(raw_values, dtype="<i8").astype(np.int64)
        elif kind == KIND_FLOAT:
            values = np.frombuffer(raw_values, dtype="<f8").astype(np.float64)
        elif kind == KIND_LIST:
            values = _object_array(list(raw_values))
        else:
            raise ValueError(f"unknown value column kind {kind!r}")
        if len(values) != len(ts):
            raise ValueError("value and time-stamp columns differ in length")
        return cls(ts, values)


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def columns_from_points(points: Sequence[Sequence[Any]]) -> Columns:
    """Columns of ``[[ts, value], ...]`` points (timestamps are already checked integers)."""
    ts = np.fromiter((p[0] for p in points), dtype=np.int64, count=len(points))
    values = [p[1] for p in points]
    kinds = set(map(type, values))
    if kinds == {float}:
        arr = np.array(values, dtype=np.float64)
    elif kinds == {int}:
        arr = np.array(values, dtype=np.int64)
    else:
        arr = _object_array(values)
    return Columns(ts, arr)


def concat(parts: Sequence[Columns]) -> Columns:
    """One series' parts (in arrival order) as one :class:`Columns`; values stay exact
    (mixed numeric kinds become an object column, never a lossy float one)."""
    if len(parts) == 1:
        return parts[0]
    ts = np.concatenate([p.ts for p in parts])
    kinds = {p.values.dtype.kind for p in parts}
    if kinds == {"i"} or kinds == {"f"}:
        values = np.concatenate([p.values for p in parts])
    else:
        values = _object_array([v for p in parts for v in p.values.tolist()])
    return Columns(ts, values)


def coerce(tp: SeriesType, values: np.ndarray) -> np.ndarray:
    """``values`` converted into a series of type ``tp`` as :func:`.model.coerce_value`
    converts one value (int64 / float64 arrays for numeric series, object for strings)."""
    kind = values.dtype.kind
    if tp == "integer":
        if kind == "i":
            return values
        if kind == "f":
            return _float_to_int(values)
        return np.array([coerce_value(tp, v) for v in values.tolist()], dtype=np.int64)
    if tp == "float":
        if kind in "if":
            return values.astype(np.float64, copy=False)
        return np.array([coerce_value(tp, v) for v in values.tolist()], dtype=np.float64)
    return _object_array([coerce_value(tp, v) for v in values.tolist()])


def _float_to_int(values: np.ndarray) -> np.ndarray:
    """C's ``(int64_t)`` cast of doubles on x86-64: NaN, infinities and values out of
    range give ``INT64_MIN``, the rest are truncated toward zero."""
    inside = (values >= -_TWO63) & (values < _TWO63)  # False for NaN
    result = np.trunc(np.where(inside, values, 0.0)).astype(np.int64)
    if not inside.all():
        result[~inside] = INT64_MIN
    return result
