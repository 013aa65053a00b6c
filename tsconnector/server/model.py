"""The embedded server's data model: databases, series, users, groups and tags in memory.

Every change goes through :meth:`Database.commit` as a plain record (a tuple of
msgpack-friendly values). ``commit`` applies it, or hands it to the journal (the
write-ahead log, when the server is durable), which applies it once it is on disk;
recovery replays the same records through :meth:`Database.apply`, so the in-memory
state is always what the log says.
"""

from __future__ import annotations

import bisect
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
    """A named regular expression; membership is recomputed from the series names."""

    name: str
    expression: str  # as written, e.g. "/sensor\\..*/" or "/x/i"
    pattern: re.Pattern[str]


@dataclass(slots=True)
class Tag:
    name: str
    series: set[str] = field(default_factory=set)


def coerce_value(tp: SeriesType, value: Value) -> Value:
    """Convert a point value into a series' type, as SiriDB does silently."""
    if tp == "integer":
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return 0
            if not -(2**63) <= value < 2**63:
                return -(2**63)  # what SiriDB's (int64_t) cast gives on x86-64
            return int(value)
        return 0
    if tp == "float":
        if isinstance(value, (int, float)):
            return float(value)
        return 0.0
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:f}"
    return str(value)


def type_of(value: Value) -> SeriesType:
    if isinstance(value, str):
        return "string"
    if isinstance(value, float):
        return "float"
    return "integer"


Journal = Callable[[Record], Any]


class Database:
    """One database: settings, series, users, groups and tags.

    Mutations are methods that build a record and pass it to :meth:`commit`; the
    ``apply_*`` counterparts do the change and are what recovery replays.
    """

    def __init__(self, name: str, precision: int = 0, *, journal: Journal | None = None) -> None:
        self.name = name
        self.precision = precision  # 0 s, 1 ms, 2 us, 3 ns
        self.uuid = str(uuid.uuid4())
        self.timezone = "NAIVE"
        self.select_points_limit = 1_000_000
        self.list_limit = 10_000
        self.drop_threshold = 1.0
        self.duration_num = 604800 * (1, 1000, 1000_000, 1000_000_000)[precision]
        self.duration_log = 86400 * (1, 1000, 1000_000, 1000_000_000)[precision]
        self.expiration_num: int | None = None
        self.expiration_log: int | None = None
        self.started_at = time.time()
        self.received_points = 0
        self.selected_points = 0
        self.series: dict[str, Series] = {}
        self.users: dict[str, User] = {"iris": User("iris", "siri", ACCESS_PROFILES["full"])}
        self.groups: dict[str, Group] = {}
        self.tags: dict[str, Tag] = {}
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

    def insert(self, batch: dict[str, list[tuple[int, Value]]]) -> int:
        """Store a validated batch ``{name: [(ts, value), ...]}``; returns the point count."""
        return self.commit(("insert", batch))

    def apply_insert(self, batch: dict[str, Iterable[Sequence[Any]]]) -> int:
        n = 0
        for name, raw in batch.items():
            points = [(int(p[0]), p[1]) for p in raw]
            if not points:
                continue
            series = self.series.get(name)
            if series is None:
                series = Series(name, self._next_sid, type_of(points[0][1]))
                self._next_sid += 1
                self.series[name] = series
                if self._order is not None:
                    self._order.append(series)
            tp = series.tp
            series.add_points([(t, coerce_value(tp, v)) for t, v in points])
            if tp == "string":
                series.log_chunks.append(len(points))
            n += len(points)
        self.received_points += n
        return n

    def drop_series(self, names: Sequence[str]) -> int:
        return self.commit(("drop_series", list(names)))

    def apply_drop_series(self, names: Sequence[str]) -> int:
        n = 0
        for name in names:
            if self.series.pop(name, None) is not None:
                n += 1
                for tag in self.tags.values():
                    tag.series.discard(name)
        if n:
            self._order = None
        return n

    def apply_drop_points(self, ranges: Sequence[Sequence[Any]]) -> int:
        """Remove the points of dropped shards: ``[start, end, is_log]`` ranges, ``[start, end)``.

        ``is_log`` shards hold string series, the others numeric series; the series
        themselves stay (with fewer or no points), as in the real server.
        """
        removed = 0
        for start, end, is_log in ranges:
            for series in self.series.values():
                if (series.tp == "string") != bool(is_log):
                    continue
                lo = bisect.bisect_left(series.ts, start)
                hi = bisect.bisect_left(series.ts, end)
                if hi > lo:
                    del series.ts[lo:hi]
                    del series.values[lo:hi]
                    removed += hi - lo
        return removed

    # -- settings --------------------------------------------------------------------
    def set_setting(self, key: str, value: Any) -> None:
        self.commit(("setting", key, value))

    def apply_setting(self, key: str, value: Any) -> None:
        if key not in {
            "select_points_limit",
            "list_limit",
            "drop_threshold",
            "timezone",
            "expiration_num",
            "expiration_log",
        }:
            raise ValueError(f"unknown setting {key!r}")
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
    def apply_group_create(self, name: str, expression: str, source: str, flags: int) -> None:
        self.groups[name] = Group(name, expression, re.compile(source, flags))

    def apply_group_rename(self, name: str, new_name: str) -> None:
        group = self.groups.pop(name)
        group.name = new_name
        self.groups[new_name] = group

    def apply_group_expression(self, name: str, expression: str, source: str, flags: int) -> None:
        group = self.groups[name]
        group.expression = expression
        group.pattern = re.compile(source, flags)

    def apply_group_drop(self, name: str) -> None:
        del self.groups[name]

    def group_members(self, name: str) -> list[Series]:
        """Series whose whole name matches the group's expression, in list order."""
        match = self.groups[name].pattern.fullmatch
        return [s for s in self.ordered_series() if match(s.name)]

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
            },
            "received_points": self.received_points,
            "next_sid": self._next_sid,
            "ordered": self._order is not None,
            "series": [
                [s.name, s.sid, s.tp, s.ts, s.values, s.log_chunks]
                for s in (self._order if self._order is not None else self.series.values())
            ],
            "users": [[u.name, u.password, u.access] for u in self.users.values()],
            "groups": [
                [g.name, g.expression, g.pattern.pattern, g.pattern.flags]
                for g in self.groups.values()
            ],
            "tags": [[t.name, sorted(t.series)] for t in self.tags.values()],
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Replace the state with a :meth:`snapshot`."""
        self.name = snap["name"]
        self.precision = snap["precision"]
        self.uuid = snap["uuid"]
        for key, value in snap["settings"].items():
            setattr(self, key, value)
        self.received_points = snap["received_points"]
        self._next_sid = snap["next_sid"]
        self.series = {}
        for name, sid, tp, ts, values, *rest in snap["series"]:
            chunks = list(rest[0]) if rest else []
            self.series[name] = Series(name, sid, tp, list(ts), list(values), chunks)
        self._order = list(self.series.values()) if snap["ordered"] else None
        self.users = {n: User(n, p, a) for n, p, a in snap["users"]}
        self.groups = {n: Group(n, e, re.compile(src, fl)) for n, e, src, fl in snap["groups"]}
        self.tags = {n: Tag(n, set(members)) for n, members in snap["tags"]}
