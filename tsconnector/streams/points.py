"""``RawPoint`` and ``StatPoint``: immutable, hashable, ordered value types (BTrDB's layout).

Both are named tuples, so they index like BTrDB's points (``p[0]`` is the time), compare
and sort by time first, hash, unpack, and cost no more than a tuple. Times are integer
nanoseconds since the epoch.
"""

from __future__ import annotations

import datetime as _dt
from typing import NamedTuple

__all__ = ["RawPoint", "StatPoint"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class RawPoint(NamedTuple):
    """One stored point: ``time`` (ns since the epoch) and ``value``."""

    time: int
    value: float

    def datetime(self) -> _dt.datetime:
        """``time`` as a UTC datetime (sub-microsecond digits floored)."""
        return _EPOCH + _dt.timedelta(microseconds=self.time // 1000)


class StatPoint(NamedTuple):
    """Statistics of one window; ``time`` is the window's START (ns), as in BTrDB.

    ``stddev`` is the population standard deviation (0.0 for a single point).
    """

    time: int
    min: float
    mean: float
    max: float
    count: int  # type: ignore[assignment]  # the field shadows tuple.count, as BTrDB names it
    stddev: float

    def datetime(self) -> _dt.datetime:
        """``time`` as a UTC datetime (sub-microsecond digits floored)."""
        return _EPOCH + _dt.timedelta(microseconds=self.time // 1000)
