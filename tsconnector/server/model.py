"""The embedded server's data model: databases, series, users, groups and tags in memory.

Every change goes through :meth:`Database.commit` as a plain record (a tuple of
msgpack-friendly values). ``commit`` applies it, or hands it to the journal (the
write-ahead log, when the server is durable), which applies it once it is on disk;
recovery replays the same records through :meth:`Database.apply`, so the in-memory
state is always what the log says.
"""

from __future__ import annotations

import bisect
import collections
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import shards as sh
from .mirror import ArrayMirror
from .regex import SiriRegex

SeriesType = Literal["integer", "float", "string"]
Value = int | float | str
Record = tuple[Any, ...]

#: Access rights as SiriDB names them, and the named profiles that grant several.
ACCESS_BITS: dict[str, int] = {
    "select": 1,
    "show": 2,
    "list": 4,
    "count": 8,
    "create": 16,
    "insert": 32,
    "drop": 64,
    "grant": 128,
    "revoke": 256,
    "alter": 512,
}
ACCESS_PROFILES: dict[str, int] = {
    "read": 1 | 2 | 4 | 8,
    "write": 1 | 2 | 4 | 8 | 16 | 32,
    "modify": 1 | 2 | 4 | 8 | 16 | 32 | 64 | 512,
    "full": 1023,
}

#: Internal id-map node size: after a series is dropped, listing order becomes the
#: order of a walk over a radix tree of this fan-out (the real server does the same).
_IMAP_FANOUT = 32


def imap_walk_key(sid: int) -> list[int]:
    """Sort key that reproduces the real server's id-map walk order for series ids."""
    digits = []
    while True:
        digits.append(sid % _IMAP_FANOUT)
        sid //= _IMAP_FANOUT
        if not sid:
            return digits


@dataclass(slots=True)
class Series:
    """One series: its points sorted by time, duplicates kept in insertion order."""

    name: str
    sid: int
    tp: SeriesType
    ts: list[int] = field(default_factory=list)
    values: list[Value] = field(default_factory=list)
    #: String series only: point counts of the insert batches, in arrival order. The
    #: real server stores each batch as one chunk, which a reading quirk exposes.
    log_chunks: list[int] = field(default_factory=list)
    #: Where the series' shards are: a small number from its name (see :mod:`.shards`).
    mask: int = 0
    #: Numeric series: the points in the in-memory buffer (not yet in a shard).
    buffer: list[tuple[int, Value]] = field(default_factory=list)
    #: Points of the series per shard ``(window start, duration)``.
    shards: dict[tuple[int, int], int] = field(default_factory=dict)
    #: Numeric series: the points as numpy arrays for reading (see :mod:`.mirror`).
    mirror: ArrayMirror | None = field(default=None, repr=False, compare=False)

    @property
    def length(self) -> int:
        return len(self.ts)

    @property
    def start(self) -> int | None:
        return self.ts[0] if self.ts else None

    @property
    def end(self) -> int | None:
        return self.ts[-1] if self.ts else None

    def add_points(self, points: Sequence[tuple[int, Value]]) -> None:
        """Add already-coerced points; equal timestamps go after those already stored."""
        if not points:
            return
        ts, values = self.ts, self.values
        in_order = not ts or points[0][0] >= ts[-1]
        if in_order:
            prev = points[0][0]
            for t, _ in points:
                if t < prev:
                    in_order = False
                    break
                prev = t
        if in_order:
            ts.extend(p[0] for p in points)
            values.extend(p[1] for p in points)
            return
        self._changed()
        ordered = sorted(points, key=lambda p: p[0])
        if len(ordered) <= 32:
            for t, v in ordered:
                i = bisect.bisect_right(ts, t)
                ts.insert(i, t)
                values.insert(i, v)
            return
        # Many points: one stable merge (linear for two sorted runs) instead of a
        # quadratic series of list inserts; stored points stay before equal new ones.
        merged = list(zip(ts, values))
        merged.extend(ordered)
        merged.sort(key=lambda p: p[0])
        ts[:] = [p[0] for p in merged]
        values[:] = [p[1] for p in merged]

    def add_columns(self, ts: Any, values: Any) -> None:
        """Add already-coerced points given as an int64 numpy array of timestamps and a
        numpy array (or list) of values; same order rules as :meth:`add_points`."""
        import numpy as np

        n = len(values)
        if not n:
            return
        stored = self.ts
        if n > 1 and bool((ts[1:] < ts[:-1]).any()):
            order = np.argsort(ts, kind="stable")
            ts = ts[order]
            values = values[order] if isinstance(values, np.ndarray) else [
                values[i] for i in order.tolist()]
        listed = values.tolist() if isinstance(values, np.ndarray) else values
        if not stored or int(ts[0]) >= stored[-1]:
            if self.mirror is not None and self.tp != "string":
                self.mirror.append(len(stored), ts, values)
            stored.extend(ts.tolist())
            self.values.extend(listed)
            return
        self._changed()
        if n <= 32:
            self.add_points(list(zip(ts.tolist(), listed)))
            return
        # Merge with the stored tail from the first position the new points reach;
        # a stable sort keeps stored points before equal new ones.
        i = bisect.bisect_right(stored, int(ts[0]))
        tail_ts = np.concatenate((np.array(stored[i:], dtype=np.int64), ts))
        order = np.argsort(tail_ts, kind="stable")
        tail_values = self.values[i:] + listed
        del stored[i:]
        del self.values[i:]
        stored.extend(tail_ts[order].tolist())
        self.values.extend([tail_values[j] for j in order.tolist()])

    def _changed(self) -> None:
        """Points were inserted or removed other than at the end: the mirror is stale."""
        if self.mirror is not None:
            self.mirror.reset()

    def arrays(self) -> tuple[Any, Any]:
        """All points as numpy arrays (int64 timestamps; int64 or float64 values): views
        of the mirror, valid until the series changes. Numeric series only."""
        if self.mirror is None:
            self.mirror = ArrayMirror(self.tp == "float")
        return self.mirror.view(self.ts, self.values)

    def remove_points(self, points: Sequence[tuple[int, Value]]) -> None:
        """Remove one stored point for each of ``points`` (equal time-stamp and value)."""
        self._changed()
        ts, values = self.ts, self.values
        for t, v in points:
            i = bisect.bisect_left(ts, t)
            while i < len(ts) and ts[i] == t:
                if values[i] == v or values[i] != values[i]:
                    del ts[i]
                    del values[i]
                    break
                i += 1

    def drop_range(self, start: int, end: int, keep: Sequence[tuple[int, Value]]) -> int:
        """Remove the points with ``start <= ts < end`` except those in ``keep``."""
        lo = bisect.bisect_left(self.ts, start)
        hi = bisect.bisect_left(self.ts, end)
        if hi <= lo:
            return 0
        self._changed()
        del self.ts[lo:hi]
        del self.values[lo:hi]
        kept = [(t, v) for t, v in keep if start <= t < end]
        if kept:
            self.add_points(sorted(kept, key=lambda p: p[0]))
        return hi - lo - len(kept)

    def slice(
        self, start: int | None = None, end: int | None = None
    ) -> tuple[list[int], list[Value]]:
        """Points with ``start <= ts < end`` (either bound may be None)."""
        lo = 0 if start is None else bisect.bisect_left(self.ts, start)
        hi = len(self.ts) if end is None else bisect.bisect_left(self.ts, end)
        return self.ts[lo:hi], self.values[lo:hi]


@dataclass(slots=True)
class User:
    name: str
    password: str
    access: int = 0


@dataclass(slots=True)
class Group:
    """A named regular expression and the series whose names it matches (kept up to
    date as series come and go, so listing groups never re-runs the expression)."""

    name: str
    expression: str  # as written, e.g. "/sensor\\..*/" or "/x/i"
    pattern: SiriRegex
    members: set[str] = field(default_factory=set)


def parse_expression(expression: str) -> SiriRegex:
    """Compile a group expression as written (``/body/`` or ``/body/i``)."""
    ignore_case = expression.endswith("i")
    body = expression[1:-2] if ignore_case else expression[1:-1]
    return SiriRegex(body, ignore_case)


@dataclass(slots=True)
class Tag:
    name: str
    series: set[str] = field(default_factory=set)


_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_C_SPACE = " \t\n\v\f\r"
_STRTOLL = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_STRTOD = re.compile(
    r"[ \t\n\v\f\r]*([+-]?)(?:"
    r"(inf(?:inity)?)"
    r"|(nan)(?:\([0-9A-Za-z_]*\))?"
    r"|0[xX]((?:[0-9A-Fa-f]+\.?[0-9A-Fa-f]*|\.[0-9A-Fa-f]+)(?:[pP][+-]?[0-9]+)?)"
    r"|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r")",
    re.IGNORECASE,
)
_HEX_EXP = re.compile(r"[pP]")


def c_double_to_int64(value: float) -> int:
    """C's ``(int64_t)`` cast of a double on x86-64 (out of range or NaN: INT64_MIN)."""
    if value != value or not -9.223372036854775808e18 <= value < 9.223372036854775808e18:
        return _INT64_MIN
    return int(value)


def c_strtoll(text: str) -> int:
    """C's ``strtoll(text, NULL, 10)``: the leading integer, saturated to int64."""
    match = _STRTOLL.match(text.split("\0", 1)[0])
    if match is None:
        return 0
    return max(_INT64_MIN, min(_INT64_MAX, int(match.group(1))))


def c_strtod(text: str) -> float:
    """C's ``strtod(text, NULL)``: the leading number (hex, inf and nan included)."""
    match = _STRTOD.match(text.split("\0", 1)[0])
    if match is None:
        return 0.0
    sign, inf, nan, hexa, decimal = match.groups()
    negative = sign == "-"
    if inf:
        return -math.inf if negative else math.inf
    if nan:
        return -math.nan if negative else math.nan
    if hexa is not None:
        if not _HEX_EXP.search(hexa):
            hexa += "p0"
        try:
            value = float.fromhex(hexa)
        except OverflowError:
            value = math.inf
        return -value if negative else value
    value = float(decimal)
    return -value if negative else value


def _c_float_text(value: float) -> str:
    """C's ``"%f"`` of a double (NaN keeps its sign)."""
    if value != value:
        return "-nan" if math.copysign(1.0, value) < 0 else "nan"
    return f"{value:f}"


def coerce_value(tp: SeriesType, value: Value) -> Value:
    """Convert a point value into a series' type, as SiriDB does silently."""
    if tp == "integer":
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return c_double_to_int64(value)
        return c_strtoll(value)
    if tp == "float":
        if isinstance(value, float):
            return value
        if isinstance(value, int):
            return float(value)
        return c_strtod(value)
    if isinstance(value, str):
        return value.split("\0", 1)[0]
    # SiriDB formats numbers into a 64-byte buffer: at most 63 characters are kept
    if isinstance(value, float):
        return _c_float_text(value)[:63]
    return str(value)[:63]


def type_of(value: Value) -> SeriesType:
    if isinstance(value, str):
        return "string"
    if isinstance(value, float):
        return "float"
    return "integer"


Journal = Callable[[Record], Any]


def _point_time(point: tuple[int, Value]) -> int:
    return point[0]

#: Database units per second, by precision code.
UNITS_PER_SECOND = (1, 1_000, 1_000_000, 1_000_000_000)
#: Bytes of a series buffer unless the database was created with another size.
DEFAULT_BUFFER_SIZE = 8192
#: Settings a ``setting`` record may change.
_SETTINGS = frozenset({
    "select_points_limit",
    "list_limit",
    "drop_threshold",
    "timezone",
    "expiration_num",
    "expiration_log",
    "tee",
})


class Database:
    """One database: settings, series, users, groups, tags and the shard index.

    Mutations are methods that build a record and pass it to :meth:`commit`; the
    ``apply_*`` counterparts do the change and are what recovery replays. Records carry
    whatever they depend on (such as the expiration times of an insert), so replaying
    them later gives the same state.
    """

    def __init__(
        self,
        name: str,
        precision: int = 0,
        *,
        journal: Journal | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        duration_num: int | None = None,
        duration_log: int | None = None,
    ) -> None:
        self.name = name
        self.precision = precision  # 0 s, 1 ms, 2 us, 3 ns
        factor = UNITS_PER_SECOND[precision]
        self.uuid = str(uuid.uuid4())
        self.timezone = "NAIVE"
        self.select_points_limit = 1_000_000
        self.list_limit = 10_000
        self.drop_threshold = 1.0
        self.buffer_size = buffer_size
        self.duration_num = duration_num if duration_num else 604800 * factor
        self.duration_log = duration_log if duration_log else 86400 * factor
        self.expiration_num: int | None = None
        self.expiration_log: int | None = None
        #: Writes older than these (database units, 0 = none) are expired; refreshed
        #: by :meth:`update_expiration` as SiriDB's heartbeat does.
        self.exp_at_num = 0
        self.exp_at_log = 0
        #: ``host:port`` inserts are copied to (None: no tee); see :mod:`.tee`.
        self.tee: tuple[str, int] | None = None
        #: Runtime state of the tee (never journaled): bumped by every ``set tee``
        #: (which drops the connection, as SiriDB does) and its connection error.
        self.tee_epoch = 0
        self.tee_error: str | None = None
        self.auto_duration = True
        #: Where the database's files are and where its buffer is reported to be
        #: (``show dbpath`` / ``show buffer_path``); set by the server.
        self.dbpath = f"/var/lib/siridb/{name}/"
        self.buffer_path: str | None = None
        self.started_at = time.time()
        self.received_points = 0
        self.selected_points = 0
        self.series: dict[str, Series] = {}
        self.users: dict[str, User] = {"iris": User("iris", "siri", ACCESS_PROFILES["full"])}
        self.groups: dict[str, Group] = {}
        self.tags: dict[str, Tag] = {}
        self.shards: dict[tuple[int, int], sh.ShardInfo] = {}
        self._next_sid = 1
        self._order: list[Series] | None = []  # None after a drop: walk order
        self.journal = journal

    # -- the commit path -------------------------------------------------------------
    def commit(self, record: Record) -> Any:
        """Apply ``record`` now (returning what apply returns), or, with a journal, hand
        it to the journal, which applies it once it is durable (log first, then apply)."""
        if self.journal is not None:
            return self.journal(record)
        return self.apply(record)

    def apply(self, record: Record) -> Any:
        """Apply one record; unknown record kinds raise ``ValueError``."""
        handler = getattr(self, "apply_" + str(record[0]), None)
        if handler is None:
            raise ValueError(f"unknown journal record {record[0]!r}")
        return handler(*record[1:])

    # -- series ----------------------------------------------------------------------
    def ordered_series(self) -> list[Series]:
        """Series in the order the real server lists them."""
        if self._order is None:
            self._order = sorted(self.series.values(), key=lambda s: imap_walk_key(s.sid))
        return list(self._order)

    @property
    def factor(self) -> int:
        """Database units per second."""
        return UNITS_PER_SECOND[self.precision]

    @property
    def buffer_len(self) -> int:
        """Points a series buffer holds before it is written to shards."""
        return max(sh.buffer_points(self.buffer_size), 1)

    def insert(self, batch: dict[str, Any]) -> int:
        """Store a validated batch ``{name: [(ts, value), ...]}`` or ``{name: Columns}``
        (see :mod:`.points`); returns the point count (stored now, or once durable when
        journaled)."""
        if batch and not isinstance(next(iter(batch.values())), (list, tuple)):
            self.commit(("points", batch, self.exp_at_num, self.exp_at_log))
        else:
            self.commit(("insert", batch, self.exp_at_num, self.exp_at_log))
        return sum(len(points) for points in batch.values())

    def apply_points(self, batch: dict[str, Any], exp_num: int = 0, exp_log: int = 0) -> int:
        """Store ``{name: Columns}`` (or their journal form) as :meth:`apply_insert` stores
        point lists; numeric points of large inserts go to shards vectorised."""
        from .points import Columns, coerce

        n = 0
        for name, cols in batch.items():
            if not isinstance(cols, Columns):
                cols = Columns.decode(cols)
            count = len(cols)
            if not count:
                continue
            series = self.series.get(name)
            if series is None:
                series = self._new_series(name, cols.series_type)
            tp = series.tp
            values = coerce(tp, cols.values)
            if tp == "string":
                self._place(series, list(zip(cols.ts.tolist(), values.tolist())), exp_log)
                series.log_chunks.append(count)
            else:
                self._place_columns(series, cols.ts, values, exp_num)
            n += count
            if not series.ts:
                self.apply_drop_series([name])  # every point expired: SiriDB drops it
        self.received_points += n
        return n

    def _place_columns(self, series: Series, ts: Any, values: Any, expire_at: int) -> None:
        """:meth:`_place` for numeric columns: an insert larger than the buffer goes to
        shards in a few vectorised steps; smaller ones take the buffer's path."""
        import numpy as np

        if len(ts) <= self.buffer_len:
            points = list(zip(ts.tolist(), values.tolist()))
            if len(ts) > 1 and not bool((ts[1:] < ts[:-1]).any()):
                self._place_sorted(series, points, expire_at, (ts, values))
            else:
                self._place(series, points, expire_at)
            return
        if bool((ts[1:] < ts[:-1]).any()):
            order = np.argsort(ts, kind="stable")
            ts, values = ts[order], values[order]
        keep = self._to_shards_columns(series, ts, expire_at)
        if keep is not None:
            ts, values = ts[keep], values[keep]
        series.add_columns(ts, values)

    def apply_insert(
        self, batch: dict[str, Iterable[Sequence[Any]]], exp_num: int = 0, exp_log: int = 0
    ) -> int:
        n = 0
        for name, raw in batch.items():
            points = [(int(p[0]), p[1]) for p in raw]
            if not points:
                continue
            series = self.series.get(name)
            if series is None:
                series = self._new_series(name, type_of(points[0][1]))
            tp = series.tp
            coerced = [(t, coerce_value(tp, v)) for t, v in points]
            expire_at = exp_log if tp == "string" else exp_num
            self._place(series, coerced, expire_at)
            if tp == "string":
                series.log_chunks.append(len(points))
            n += len(points)
            if not series.ts:
                self.apply_drop_series([name])  # every point expired: SiriDB drops it
        self.received_points += n
        return n

    def _new_series(self, name: str, tp: SeriesType) -> Series:
        mask = sh.series_mask(name, tp == "string", self.mask_num, self.mask_log)
        series = Series(name, self._next_sid, tp, mask=mask)
        self._next_sid += 1
        self.series[name] = series
        if self._order is not None:
            self._order.append(series)
        for group in self.groups.values():
            if group.pattern.matches(name):
                group.members.add(name)
        return series

    @property
    def mask_num(self) -> int:
        return sh.shard_mask(self.duration_num, self.factor)

    @property
    def mask_log(self) -> int:
        return sh.shard_mask(self.duration_log, self.factor)

    def _place(self, series: Series, points: list[tuple[int, Value]], expire_at: int) -> None:
        """Store points the way SiriDB routes them: into the buffer, or to shards."""
        size = self.buffer_len
        if series.tp != "string" and len(points) == 1:
            self._buffer_point(series, points[0], expire_at)
            return
        ordered = sorted(points, key=_point_time)
        if series.tp == "string" or len(ordered) > size:
            series.add_points(self._to_shards(series, ordered, expire_at))
            return
        self._place_sorted(series, ordered, expire_at)

    def _place_sorted(
        self,
        series: Series,
        ordered: list[tuple[int, Value]],
        expire_at: int,
        columns: tuple[Any, Any] | None = None,
    ) -> None:
        """:meth:`_place` for numeric points sorted by time that fit in the buffer;
        ``columns``: the same points as numpy arrays (added to the series vectorised)."""
        buffered = series.buffer
        if len(ordered) + len(buffered) > self.buffer_len:
            merged = sorted(ordered + buffered[::-1], key=_point_time)
            kept = self._to_shards(series, merged, expire_at)
            series.buffer = []
            self._settle(series, ordered, buffered, kept)
            return
        self._buffer_points(series, ordered, expire_at, columns)

    def _buffer_points(
        self,
        series: Series,
        ordered: list[tuple[int, Value]],
        expire_at: int,
        columns: tuple[Any, Any] | None = None,
    ) -> None:
        """:meth:`_buffer_point` for each of ``ordered`` (sorted by time, all fitting in
        the buffer, so it fills at the last point at most), as a few list operations: a
        point goes after the buffered ones of its time, as one by one."""
        buffered = series.buffer
        stale = bool(buffered) and ordered[0][0] < buffered[-1][0]
        buffered.extend(ordered)
        if stale:
            buffered.sort(key=_point_time)  # stable: buffered points stay first
        if columns is not None:
            series.add_columns(*columns)
        else:
            series.add_points(ordered)
        if len(buffered) >= self.buffer_len:
            kept = self._to_shards(series, buffered, expire_at)
            series.buffer = []
            self._settle(series, [], buffered, kept)

    def _buffer_point(self, series: Series, point: tuple[int, Value], expire_at: int) -> None:
        buffered = series.buffer
        i = len(buffered)
        while i and buffered[i - 1][0] > point[0]:
            i -= 1
        buffered.insert(i, point)
        series.add_points([point])
        if len(buffered) >= self.buffer_len:
            kept = self._to_shards(series, buffered, expire_at)
            series.buffer = []
            self._settle(series, [], buffered, kept)

    @staticmethod
    def _settle(
        series: Series,
        new: list[tuple[int, Value]],
        stored: list[tuple[int, Value]],
        kept: list[tuple[int, Value]],
    ) -> None:
        """Add the ``new`` points that were kept; remove ``stored`` ones that expired."""
        if len(kept) == len(new) + len(stored):  # a subset of them as large: all of them
            if new:
                series.add_points(new)
            return
        remaining = collections.Counter(kept)  # equal points count as one kind, as ``in``
        keep_new: list[tuple[int, Value]] = []
        for point in new:
            if remaining[point] > 0:
                remaining[point] -= 1
                keep_new.append(point)
        lost = []
        for point in stored:
            if remaining[point] > 0:
                remaining[point] -= 1
            else:
                lost.append(point)
        if keep_new:
            series.add_points(keep_new)
        if lost:
            series.remove_points(lost)

    def _to_shards(
        self, series: Series, points: list[tuple[int, Value]], expire_at: int
    ) -> list[tuple[int, Value]]:
        """Write sorted points to shards; returns those kept (not expired)."""
        is_log = series.tp == "string"
        duration = self.shard_duration(series)
        if not duration:
            interval = sh.detect_interval([p[0] for p in points]) if self.auto_duration else 0
            if interval:
                duration = sh.duration_from_interval(
                    interval, self.factor, self.duration_num, self.duration_log)
            else:
                duration = self.duration_log if is_log else self.duration_num
        kept: list[tuple[int, Value]] = []
        stamps = [p[0] for p in points]
        for start, first, stop in sh.windows(stamps, duration):
            if start + duration < expire_at:
                continue
            key = (start, duration)
            sid = start + series.mask
            shard = self.shards.get((sid, duration))
            count = stop - first
            if shard is None:
                shard = self.shards[(sid, duration)] = sh.ShardInfo(
                    sid, duration, sh.LOG if is_log else sh.NUMBER)
            elif series.shards.get(key):
                shard.new_values = True
            shard.size += count * (sh.POINT_SIZE if not is_log else 24)
            series.shards[key] = series.shards.get(key, 0) + count
            kept.extend(points[first:stop])
        return kept

    def _to_shards_columns(self, series: Series, ts: Any, expire_at: int) -> Any:
        """:meth:`_to_shards` for sorted int64 time-stamps of a numeric series: the shard
        bookkeeping per window, one step per window; returns a mask of the points kept
        (None when all are)."""
        import numpy as np

        duration = self.shard_duration(series)
        if not duration:
            head = ts[:64].tolist()
            interval = sh.detect_interval(head) if self.auto_duration else 0
            if interval:
                duration = sh.duration_from_interval(
                    interval, self.factor, self.duration_num, self.duration_log)
            else:
                duration = self.duration_num
        starts = ts // duration * duration
        edges = np.flatnonzero(starts[1:] != starts[:-1]) + 1
        firsts = [0, *edges.tolist()]
        stops = [*firsts[1:], len(ts)]
        keep = None
        for first, stop in zip(firsts, stops):
            start = int(starts[first])
            if start + duration < expire_at:
                if keep is None:
                    keep = np.ones(len(ts), dtype=bool)
                keep[first:stop] = False
                continue
            key = (start, duration)
            sid = start + series.mask
            shard = self.shards.get((sid, duration))
            count = stop - first
            if shard is None:
                shard = self.shards[(sid, duration)] = sh.ShardInfo(sid, duration, sh.NUMBER)
            elif series.shards.get(key):
                shard.new_values = True
            shard.size += count * sh.POINT_SIZE
            series.shards[key] = series.shards.get(key, 0) + count
        return keep

    def resize_buffer(self, buffer_size: int) -> None:
        """Use another buffer size (SiriDB's ``database.conf``): buffers that hold as
        many points as the new size allows go to shards, as on the real server."""
        if buffer_size != self.buffer_size:
            self.commit(("resize_buffer", buffer_size, self.exp_at_num, self.exp_at_log))

    def apply_resize_buffer(self, buffer_size: int, exp_num: int = 0, exp_log: int = 0) -> None:
        shrink = buffer_size < self.buffer_size
        self.buffer_size = buffer_size
        if not shrink:
            return
        limit = self.buffer_len
        for series in list(self.series.values()):
            if series.tp == "string" or len(series.buffer) < limit:
                continue
            buffered = series.buffer
            kept = self._to_shards(series, buffered, exp_num)
            series.buffer = []
            self._settle(series, [], buffered, kept)

    def shard_duration(self, series: Series) -> int:
        """The duration of the series' earliest shard (0 without shards)."""
        if not series.shards:
            return 0
        return min(series.shards)[1]

    def drop_series(self, names: Sequence[str]) -> None:
        """Drop series by name (now, or once durable when journaled)."""
        self.commit(("drop_series", list(names)))

    def apply_drop_series(self, names: Sequence[str]) -> int:
        n = 0
        for name in names:
            if self.series.pop(name, None) is not None:
                n += 1
                for tag in self.tags.values():
                    tag.series.discard(name)
                for group in self.groups.values():
                    group.members.discard(name)
        if n:
            self._order = None
        return n

    def apply_drop_points(self, ranges: Sequence[Sequence[Any]]) -> int:
        """Remove points in ``[start, end, is_log]`` ranges (records of older versions)."""
        removed = 0
        for start, end, is_log in ranges:
            for series in self.series.values():
                if (series.tp == "string") != bool(is_log):
                    continue
                removed += series.drop_range(start, end, series.buffer)
        return removed

    # -- shards ----------------------------------------------------------------------
    def shard_list(self) -> list[sh.ShardInfo]:
        """Shards in the order SiriDB walks them (its id map, then duration)."""
        return sorted(
            self.shards.values(), key=lambda x: (imap_walk_key(x.sid), x.duration))

    def update_expiration(self, now: int) -> None:
        """Recompute the expiration times (``now`` in database units), as SiriDB's
        heartbeat does."""
        self.exp_at_num = now - self.expiration_num if self.expiration_num else 0
        self.exp_at_log = now - self.expiration_log if self.expiration_log else 0

    def expired_shards(self) -> list[tuple[int, int]]:
        """Keys of the shards whose window ended before their kind's expiration time."""
        out = []
        for key, shard in self.shards.items():
            expire_at = self.exp_at_log if shard.tp == sh.LOG else self.exp_at_num
            if shard.end < expire_at:
                out.append(key)
        return out

    def drop_shards(self, keys: Sequence[tuple[int, int]]) -> None:
        """Drop shards (by ``(sid, duration)``) and the points they hold (now, or once
        durable when journaled)."""
        self.commit(("drop_shards", [list(k) for k in keys]))

    def apply_drop_shards(self, keys: Sequence[Sequence[int]]) -> int:
        dropped = 0
        empty: list[str] = []
        for sid, duration in keys:
            shard = self.shards.pop((sid, duration), None)
            if shard is None:
                continue
            dropped += 1
            key = (shard.start, duration)
            is_log = shard.tp == sh.LOG
            for series in self.series.values():
                if (series.tp == "string") != is_log or series.mask != sid - shard.start:
                    continue
                if series.shards.pop(key, None) is None:
                    continue
                series.drop_range(shard.start, shard.end, series.buffer)
                if not series.ts:
                    empty.append(series.name)
        if empty:
            self.apply_drop_series(empty)
        return dropped

    # -- settings --------------------------------------------------------------------
    def set_setting(self, key: str, value: Any) -> None:
        self.commit(("setting", key, value))

    def apply_setting(self, key: str, value: Any) -> None:
        if key not in _SETTINGS:
            raise ValueError(f"unknown setting {key!r}")
        if key == "tee":
            self.tee_epoch += 1
            self.tee_error = None
            if value is not None:
                value = (str(value[0]), int(value[1]))
        elif isinstance(value, int) and not isinstance(value, bool):
            # Journals of older versions may hold values outside int64 (which made
            # ``show`` fail): read them as the C server's int64 arithmetic would.
            value = (value + 2**63) % 2**64 - 2**63
            if key.startswith("expiration_") and value <= 0:
                value = None
        setattr(self, key, value)

    # -- users -----------------------------------------------------------------------
    def apply_user_create(self, name: str, password: str) -> None:
        self.users[name] = User(name, password, 0)

    def apply_user_password(self, name: str, password: str) -> None:
        self.users[name].password = password

    def apply_user_rename(self, name: str, new_name: str) -> None:
        user = self.users.pop(name)
        user.name = new_name
        self.users[new_name] = user

    def apply_user_access(self, name: str, access: int) -> None:
        self.users[name].access = access

    def apply_user_drop(self, name: str) -> None:
        del self.users[name]

    # -- groups ----------------------------------------------------------------------
    def apply_group_create(self, name: str, expression: str, *_: Any) -> None:
        group = Group(name, expression, parse_expression(expression))
        self._fill_group(group)
        self.groups[name] = group

    def apply_group_rename(self, name: str, new_name: str) -> None:
        group = self.groups.pop(name)
        group.name = new_name
        self.groups[new_name] = group

    def apply_group_expression(self, name: str, expression: str, *_: Any) -> None:
        group = self.groups[name]
        group.expression = expression
        group.pattern = parse_expression(expression)
        self._fill_group(group)

    def apply_group_drop(self, name: str) -> None:
        del self.groups[name]

    def _fill_group(self, group: Group) -> None:
        matches = group.pattern.matches
        group.members = {name for name in self.series if matches(name)}

    def group_members(self, name: str) -> list[Series]:
        """Series whose name the group's expression matches, in list order."""
        members = self.groups[name].members
        return [s for s in self.ordered_series() if s.name in members]

    # -- tags ------------------------------------------------------------------------
    def apply_tag_add(self, tag: str, names: Sequence[str]) -> int:
        t = self.tags.get(tag)
        if t is None:
            t = self.tags[tag] = Tag(tag)
        before = len(t.series)
        t.series.update(n for n in names if n in self.series)
        return len(t.series) - before

    def apply_tag_remove(self, tag: str, names: Sequence[str]) -> int:
        t = self.tags[tag]
        before = len(t.series)
        t.series.difference_update(names)
        return before - len(t.series)

    def apply_tag_rename(self, name: str, new_name: str) -> None:
        tag = self.tags.pop(name)
        tag.name = new_name
        self.tags[new_name] = tag

    def apply_tag_drop(self, name: str) -> None:
        del self.tags[name]

    # -- snapshots -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The whole state as msgpack-friendly data (see :meth:`restore`)."""
        return {
            "name": self.name,
            "precision": self.precision,
            "uuid": self.uuid,
            "settings": {
                "timezone": self.timezone,
                "select_points_limit": self.select_points_limit,
                "list_limit": self.list_limit,
                "drop_threshold": self.drop_threshold,
                "expiration_num": self.expiration_num,
                "expiration_log": self.expiration_log,
                "buffer_size": self.buffer_size,
                "duration_num": self.duration_num,
                "duration_log": self.duration_log,
                "tee": list(self.tee) if self.tee is not None else None,
            },
            "received_points": self.received_points,
            "next_sid": self._next_sid,
            "ordered": self._order is not None,
            "series": [
                [
                    s.name, s.sid, s.tp, s.ts, s.values, s.log_chunks, s.mask,
                    [list(p) for p in s.buffer], [[a, b, n] for (a, b), n in s.shards.items()],
                ]
                for s in (self._order if self._order is not None else self.series.values())
            ],
            "shards": [
                [x.sid, x.duration, x.tp, x.size, x.new_values] for x in self.shards.values()
            ],
            "users": [[u.name, u.password, u.access] for u in self.users.values()],
            "groups": [[g.name, g.expression, "", 0] for g in self.groups.values()],
            "tags": [[t.name, sorted(t.series)] for t in self.tags.values()],
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Replace the state with a :meth:`snapshot`."""
        self.name = snap["name"]
        self.precision = snap["precision"]
        self.uuid = snap["uuid"]
        for key, value in snap["settings"].items():
            if key == "tee" and value is not None:
                value = (str(value[0]), int(value[1]))
            setattr(self, key, value)
        self.received_points = snap["received_points"]
        self._next_sid = snap["next_sid"]
        self.series = {}
        for name, sid, tp, ts, values, *rest in snap["series"]:
            chunks = list(rest[0]) if rest else []
            series = Series(name, sid, tp, list(ts), list(values), chunks)
            if len(rest) >= 4:
                series.mask = int(rest[1])
                series.buffer = [(int(t), v) for t, v in rest[2]]
                series.shards = {(int(a), int(b)): int(n) for a, b, n in rest[3]}
            else:
                series.mask = sh.series_mask(
                    name, tp == "string", self.mask_num, self.mask_log)
            self.series[name] = series
        self.shards = {
            (int(sid), int(dur)): sh.ShardInfo(int(sid), int(dur), int(tp), int(size), bool(new))
            for sid, dur, tp, size, new in snap.get("shards", [])
        }
        self._order = list(self.series.values()) if snap["ordered"] else None
        self.users = {n: User(n, p, a) for n, p, a in snap["users"]}
        self.groups = {}
        for name, expression, *_ in snap["groups"]:
            self.apply_group_create(name, expression)
        self.tags = {n: Tag(n, set(members)) for n, members in snap["tags"]}
