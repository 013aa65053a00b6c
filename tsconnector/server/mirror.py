"""numpy copies of a numeric series' points, kept in step with its lists.

A series stores its points in Python lists (cheap inserts anywhere, what the shard
model edits); selects and aggregates read them as numpy arrays. The mirror holds
arrays with spare capacity: points appended in time order are copied once (straight
from the insert's arrays when it is in step), anything else resets it and the next
read rebuilds it. Reading a range is then a view, not a copy of a million objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ArrayMirror"]


class ArrayMirror:
    """The first ``n`` points of a series as arrays (``ts`` int64, ``values`` int64 or
    float64 by the series type)."""

    __slots__ = ("n", "ts", "values")

    def __init__(self, is_float: bool) -> None:
        self.n = 0
        self.ts = np.empty(0, dtype=np.int64)
        self.values = np.empty(0, dtype=np.float64 if is_float else np.int64)

    def reset(self) -> None:
        """The lists changed other than at their end: rebuild on the next read, into new
        arrays (views handed out earlier keep the points they were taken from)."""
        self.n = 0
        self.ts = self.ts[:0]
        self.values = self.values[:0]

    def _reserve(self, size: int) -> None:
        if size > len(self.ts):
            capacity = max(size, len(self.ts) * 2, 1024)
            ts = np.empty(capacity, dtype=np.int64)
            values = np.empty(capacity, dtype=self.values.dtype)
            ts[: self.n] = self.ts[: self.n]
            values[: self.n] = self.values[: self.n]
            self.ts, self.values = ts, values

    def append(self, at: int, ts: Any, values: Any) -> None:
        """Points appended to lists that held ``at`` points (ignored when not in step)."""
        if self.n != at:
            return
        end = at + len(ts)
        self._reserve(end)
        self.ts[at:end] = ts
        self.values[at:end] = values
        self.n = end

    def view(self, ts: list[int], values: list[Any]) -> tuple[Any, Any]:
        """Arrays of all points of the lists ``ts`` and ``values`` (views, not copies)."""
        n = len(ts)
        if self.n > n:
            self.reset()
        if self.n < n:
            start = self.n
            self._reserve(n)
            self.ts[start:n] = ts[start:]
            self.values[start:n] = values[start:]
            self.n = n
        return self.ts[:n], self.values[:n]
