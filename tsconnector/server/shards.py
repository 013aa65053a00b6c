"""How SiriDB 2.0.55 places points in shards: masks, durations, the insert buffer.

SiriDB keeps the points of each series in *shards*: one per time window of a fixed
duration and kind (``number`` shards for integer and float series, ``log`` shards for
string series). A shard's id is the start of its window plus the series' *mask*, a
small number derived from the series name, so series of one window spread over a few
shards. A numeric point first goes to the series' in-memory buffer; the buffer (or a
large insert directly) is written to shards when it is full. A series without shards
takes its shard duration from the interval of the points written first (automatic
durations), else from the database defaults. Points of a shard whose window ended
before the expiration time are never written, and expired shards are dropped.

This module has the rules (pure functions); :mod:`.model` keeps the state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "LOG",
    "NUMBER",
    "OPTIMAL_POINTS_PER_SHARD",
    "POINT_SIZE",
    "ShardInfo",
    "buffer_points",
    "detect_interval",
    "duration_from_interval",
    "series_mask",
    "shard_mask",
    "shard_status",
    "windows",
]

NUMBER: Final = 0
LOG: Final = 1
#: Bytes of one buffered point (a buffer of ``buffer_size`` bytes holds size/16 points).
POINT_SIZE: Final = 16
#: Automatic durations aim at this many points per shard.
OPTIMAL_POINTS_PER_SHARD: Final = 2000
#: An interval is accepted when the middle half of the gaps lie within 10% of it.
_TOLERANCE_DIVISOR: Final = 100 // 10
_HOUR: Final = 3600
_DAY: Final = 86400
_WEEK: Final = 604800
_U64: Final = 1 << 64
_U32: Final = 1 << 32


@dataclass(slots=True)
class ShardInfo:
    """One shard: id, duration and kind, its (estimated) size and its status flags."""

    sid: int
    duration: int
    tp: int  # NUMBER or LOG
    size: int = 0
    new_values: bool = False

    @property
    def start(self) -> int:
        return self.sid - self.sid % self.duration

    @property
    def end(self) -> int:
        return self.start + self.duration


def shard_mask(duration: int, factor: int) -> int:
    """The mask modulus for a database duration (in database units)."""
    return int(math.sqrt(duration // factor)) // 24


def series_mask(name: str, is_log: bool, mask_num: int, mask_log: int) -> int:
    """A series' mask: the sum of its name bytes (as C ``char``) folded into the range."""
    total = 0
    for byte in name.encode("utf-8", "surrogateescape"):
        total += byte - 256 if byte >= 128 else byte
    total %= _U32
    if is_log:
        return (total // 11) % max(mask_log, 1) + 600
    return (total // 11) % max(mask_num, 1)


def buffer_points(buffer_size: int) -> int:
    """How many points a series buffer of ``buffer_size`` bytes holds."""
    return buffer_size // POINT_SIZE


def detect_interval(ts: Sequence[int]) -> int:
    """The regular interval of sorted time-stamps, or 0 (needs at least 8 points)."""
    if len(ts) < 8:
        return 0
    n = min(len(ts) - 1, 63)
    gaps = sorted(ts[i + 1] - ts[i] for i in range(n))
    a = n // 4
    b = n // 2
    c = gaps[(b << 1) - a]
    low, mid = gaps[a], gaps[b]
    tolerance = mid // _TOLERANCE_DIVISOR
    if low + tolerance < mid or c - tolerance > mid:
        return 0
    return mid


def duration_from_interval(interval: int, factor: int, duration_num: int, duration_log: int) -> int:
    """The shard duration SiriDB picks for points ``interval`` apart."""
    n = interval * OPTIMAL_POINTS_PER_SHARD % _U64
    if n == duration_num:
        return duration_num
    if n == duration_log:
        return duration_log
    for unit in (_WEEK, _DAY):
        size = unit * factor
        if n // size:
            return (n // size + 1) * size
    hour = _HOUR * factor
    return (n // hour + 1) * hour


def windows(ts: Sequence[int], duration: int) -> list[tuple[int, int, int]]:
    """``(shard_start, first, stop)`` index ranges of sorted time-stamps per window."""
    out: list[tuple[int, int, int]] = []
    i = 0
    size = len(ts)
    while i < size:
        start = ts[i] // duration * duration
        end = start + duration
        j = i + 1
        while j < size and ts[j] < end:
            j += 1
        out.append((start, i, j))
        i = j
    return out


def shard_status(shard: ShardInfo) -> str:
    """The status text of ``list shards`` for a shard."""
    return "new-values" if shard.new_values else "ok"
