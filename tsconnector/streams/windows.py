"""BTrDB's windows computed exactly from raw points: ``[start + k*width, start + (k+1)*width)``.

Why not SiriDB's aggregates: SiriDB puts a point at ``t`` into the bucket
``(ceil(t/w)*w - w, ceil(t/w)*w]`` -- left-open, right-closed, aligned to the epoch and
stamped with its END -- while a BTrDB window is left-closed, right-open and stamped with
its START. A point exactly on a boundary (1 Hz data with minute windows: every 60th
point) belongs to different windows in the two models, and no SiriDB query moves a point
across a bucket edge. So the windows are folded here, chunk by chunk, from points that
the caller streams in with bounded memory; partial statistics of a window cut by a chunk
edge are merged exactly (counts, min, max) and with Chan's formula (mean, variance).

Window indexes are computed in integer arithmetic from nanoseconds (``floor((t*unit -
start) / width)``), so windows that are not a whole number of database units (every
``aligned_windows`` pointwidth on a s/ms/us database) are still exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..protocol.answers import gc_paused
from ..timeutil import INT64_MAX, INT64_MIN, NS_PER_UNIT
from .points import StatPoint

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["WindowAccumulator", "WindowSpec", "WindowStats"]

MAX_POINTWIDTH = 63


@dataclass(frozen=True)
class WindowSpec:
    """``count`` windows of ``width`` ns, the first starting at ``start`` (ns)."""

    start: int
    width: int
    count: int

    @property
    def end(self) -> int:
        """One past the last nanosecond of the last window."""
        return self.start + self.width * self.count

    @classmethod
    def windows(cls, start: int, end: int, width: int) -> WindowSpec:
        """BTrDB's ``windows``: ``end`` drops to ``start + width * ((end - start) // width)``."""
        if isinstance(width, bool) or not isinstance(width, int):
            raise TypeError(f"width must be an int of nanoseconds, not {type(width).__name__}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        count = max(0, (end - start) // width)
        return cls(start, width, count)

    @classmethod
    def aligned(cls, start: int, end: int, pointwidth: int) -> WindowSpec:
        """BTrDB's ``aligned_windows``: ``2**pointwidth`` ns, low bits of both bounds cleared."""
        if isinstance(pointwidth, bool) or not isinstance(pointwidth, int):
            raise TypeError(f"pointwidth must be an int, not {type(pointwidth).__name__}")
        if not 0 <= pointwidth <= MAX_POINTWIDTH:
            raise ValueError(f"pointwidth must be 0..{MAX_POINTWIDTH}, got {pointwidth}")
        width = 1 << pointwidth
        first = start - start % width
        last = end - end % width
        return cls(first, width, max(0, (last - first) // width))


@dataclass
class WindowStats:
    """The non-empty windows of one stream as parallel arrays (``time`` = window start, ns)."""

    time: NDArray[Any]
    min: NDArray[np.float64]
    mean: NDArray[np.float64]
    max: NDArray[np.float64]
    count: NDArray[np.int64]
    stddev: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.count)

    def points(self) -> list[StatPoint]:
        """The windows as :class:`StatPoint` objects."""
        new = tuple.__new__
        columns = (self.time, self.min, self.mean, self.max, self.count, self.stddev)
        with gc_paused():
            return [new(StatPoint, row) for row in zip(*(c.tolist() for c in columns))]

    def column(self, agg: str) -> NDArray[Any]:
        """One statistic by name: ``min``, ``mean``, ``max``, ``count`` or ``stddev``."""
        if agg not in ("min", "mean", "max", "count", "stddev"):
            raise ValueError(f"agg must be min, mean, max, count or stddev, not {agg!r}")
        result: NDArray[Any] = getattr(self, agg)
        return result


def _empty_stats() -> WindowStats:
    f = np.zeros(0, dtype=np.float64)
    return WindowStats(np.zeros(0, dtype=np.int64), f, f, f, np.zeros(0, dtype=np.int64), f)


@dataclass
class _Part:
    """Statistics of the windows one chunk touched; ``index`` relative to ``base``."""

    base: int
    index: NDArray[Any]
    count: NDArray[np.int64]
    min: NDArray[np.float64]
    max: NDArray[np.float64]
    mean: NDArray[np.float64]
    m2: NDArray[np.float64]


@dataclass
class WindowAccumulator:
    """Folds one stream's points, given in time order chunk by chunk, into windows."""

    spec: WindowSpec
    precision: int
    _parts: list[_Part] = field(default_factory=list)

    def add(self, ts: NDArray[np.int64], values: NDArray[np.float64]) -> None:
        """Add sorted timestamps (database units, all inside the spec) and their values."""
        if len(ts) == 0:
            return
        unit = NS_PER_UNIT[self.precision]
        spec = self.spec
        t0 = int(ts[0])
        offset0 = t0 * unit - spec.start
        base, rem0 = divmod(offset0, spec.width)
        span = int(ts[-1]) - t0
        rel: NDArray[Any]
        if span * unit + rem0 <= INT64_MAX and spec.width <= INT64_MAX:
            rel = ((ts - t0) * unit + rem0) // spec.width
        else:  # a chunk spanning centuries in a coarse unit: exact with Python integers
            rel = np.array(
                [((int(t) - t0) * unit + rem0) // spec.width for t in ts.tolist()], dtype=object
            )
        starts = np.flatnonzero(np.concatenate(([True], rel[1:] != rel[:-1])))
        counts = np.diff(np.append(starts, len(ts))).astype(np.int64)
        sums = np.add.reduceat(values, starts)
        means = sums / counts
        dev = values - np.repeat(means, counts)
        self._parts.append(
            _Part(
                base,
                rel[starts],
                counts,
                np.minimum.reduceat(values, starts),
                np.maximum.reduceat(values, starts),
                means,
                np.add.reduceat(dev * dev, starts),
            )
        )

    def result(self) -> WindowStats:
        """The windows seen so far, one per non-empty window, in time order."""
        parts = self._parts
        if not parts:
            return _empty_stats()
        base = parts[0].base
        index = np.concatenate([_shift(p.index, p.base - base) for p in parts])
        count = np.concatenate([p.count for p in parts])
        vmin = np.concatenate([p.min for p in parts])
        vmax = np.concatenate([p.max for p in parts])
        mean = np.concatenate([p.mean for p in parts])
        m2 = np.concatenate([p.m2 for p in parts])
        if len(parts) > 1:  # windows cut by a chunk edge appear twice in a row: merge
            starts = np.flatnonzero(np.concatenate(([True], index[1:] != index[:-1])))
            if len(starts) != len(index):
                n = np.add.reduceat(count, starts)
                total = np.add.reduceat(mean * count, starts)
                merged_mean = total / n
                sizes = np.diff(np.append(starts, len(index)))
                spread = count * (mean - np.repeat(merged_mean, sizes)) ** 2
                m2 = np.add.reduceat(m2, starts) + np.add.reduceat(spread, starts)
                vmin = np.minimum.reduceat(vmin, starts)
                vmax = np.maximum.reduceat(vmax, starts)
                index, count, mean = index[starts], n, merged_mean
        time = _window_times(self.spec, base, index)
        stddev = np.sqrt(np.maximum(m2 / count, 0.0))
        return WindowStats(time, vmin, mean, vmax, count.astype(np.int64), stddev)


def _shift(index: NDArray[Any], delta: int) -> NDArray[Any]:
    if delta == 0:
        return index
    if index.dtype == object or abs(delta) + int(np.max(np.abs(index))) > INT64_MAX:
        return np.array([int(i) + delta for i in index.tolist()], dtype=object)
    return index + delta


def _window_times(spec: WindowSpec, base: int, index: NDArray[Any]) -> NDArray[Any]:
    """Window starts ``spec.start + (base + index) * width``: int64, or Python ints if wider."""
    if len(index) == 0:
        return np.zeros(0, dtype=np.int64)
    first = spec.start + (base + int(index[0])) * spec.width
    last = spec.start + (base + int(index[-1])) * spec.width
    origin = spec.start + base * spec.width
    if (
        min(first, origin) >= INT64_MIN
        and max(last, origin) <= INT64_MAX
        and last - origin <= INT64_MAX
        and spec.width <= INT64_MAX
        and index.dtype != object
    ):
        return origin + index.astype(np.int64) * spec.width
    return np.array(
        [spec.start + (base + int(i)) * spec.width for i in index.tolist()], dtype=object
    )
