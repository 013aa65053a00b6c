"""``StreamSet``: an immutable set of streams read together, in as few queries as possible.

Every method that narrows or reshapes the set (``filter``, ``windows``,
``aligned_windows``) returns a new set and leaves this one alone. Data methods name many
series in each query (SiriDB selects many at once): ``values()`` is two queries in
flight (half the series each); ``windows()`` one ``count()`` plus one query per chunk of
points; ``earliest``, ``latest`` and ``count`` one query. Never one query per stream.
"""

from __future__ import annotations

import os
import re
import uuid as _uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO, overload

import numpy as np

from . import transform
from .errors import StreamsError
from .ingest import apply_merge, check_merge, normalize_points
from .meta import StreamRow, decode_annotations
from .naming import to_uuid
from .points import RawPoint, StatPoint
from .stream import Stream, check_version
from .timeargs import MAXIMUM_TIME, MINIMUM_TIME, duration_ns, now_ns, to_nanoseconds
from .windows import WindowSpec

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .db import StreamDB
    from .transform import Column

__all__ = ["StreamSet"]

NameCallable = Callable[[Stream], str]


@dataclass(frozen=True)
class _Windowing:
    """A window request: ``windows(width)`` or ``aligned_windows(pointwidth)``."""

    width: int | None = None
    pointwidth: int | None = None

    def spec(self, start: int, end: int) -> WindowSpec:
        if self.pointwidth is not None:
            return WindowSpec.aligned(start, end, self.pointwidth)
        assert self.width is not None
        return WindowSpec.windows(start, end, self.width)


def _default_name(stream: Stream) -> str:
    return f"{stream.collection}/{stream.name}"


def _text_matches(pattern: str | re.Pattern[str], value: str) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.search(value) is not None
    return pattern.lower() == value.lower()


class StreamSet(Sequence[Stream]):
    """Streams of one :class:`StreamDB`, with an optional time range and window request."""

    __slots__ = ("_db", "_end", "_start", "_streams", "_windowing")

    def __init__(
        self,
        streams: Iterable[Stream],
        *,
        start: int | None = None,
        end: int | None = None,
        _windowing: _Windowing | None = None,
    ) -> None:
        members = tuple(dict.fromkeys(streams))  # unique, in order
        dbs = {id(s.db) for s in members}
        if len(dbs) > 1:
            raise ValueError("a StreamSet holds streams of one StreamDB")
        self._streams = members
        self._db: StreamDB | None = members[0].db if members else None
        self._start = start
        self._end = end
        self._windowing = _windowing

    # -- sequence ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self) -> Iterator[Stream]:
        return iter(self._streams)

    @overload
    def __getitem__(self, item: int) -> Stream: ...

    @overload
    def __getitem__(self, item: slice) -> StreamSet: ...

    @overload
    def __getitem__(self, item: _uuid.UUID | str) -> Stream: ...

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            return self._clone(self._streams[item])
        if isinstance(item, int):
            return self._streams[item]
        wanted = to_uuid(item)
        for stream in self._streams:
            if stream.uuid == wanted:
                return stream
        raise KeyError(f"no stream {wanted} in this set")

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Stream):
            return item in self._streams
        try:
            wanted = to_uuid(item)
        except (TypeError, ValueError):
            return False
        return any(s.uuid == wanted for s in self._streams)

    def __repr__(self) -> str:
        window = ""
        if self._windowing is not None:
            w = self._windowing
            window = f" windows={w.width}" if w.width is not None else f" pointwidth={w.pointwidth}"
        return f"<StreamSet of {len(self._streams)} streams{window}>"

    @property
    def uuids(self) -> list[_uuid.UUID]:
        """The streams' UUIDs, in set order."""
        return [s.uuid for s in self._streams]

    @property
    def start(self) -> int:
        """The range's start in ns (BTrDB's minimum when unfiltered)."""
        return MINIMUM_TIME if self._start is None else self._start

    @property
    def end(self) -> int:
        """The range's end in ns, exclusive (BTrDB's maximum when unfiltered)."""
        return MAXIMUM_TIME if self._end is None else self._end

    def _clone(self, streams: Iterable[Stream] | None = None, **changes: Any) -> StreamSet:
        fields: dict[str, Any] = {
            "start": self._start,
            "end": self._end,
            "_windowing": self._windowing,
        }
        fields.update(changes)
        return StreamSet(self._streams if streams is None else streams, **fields)

    # -- narrowing (new sets) ---------------------------------------------------------
    def filter(
        self,
        start: Any = None,
        end: Any = None,
        collection: str | re.Pattern[str] | None = None,
        name: str | re.Pattern[str] | None = None,
        unit: str | re.Pattern[str] | None = None,
        tags: Mapping[str, str] | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> StreamSet:
        """A new set: the time range narrowed, and streams kept by their cached metadata.

        Strings match case-insensitively and exactly, compiled regexes with
        ``re.search``; ``tags`` and ``annotations`` match as subsets (annotation values
        as decoded). Metadata filters need loaded streams (``await refresh()``).
        """
        new_start = self._start if start is None else to_nanoseconds(start, "start")
        new_end = self._end if end is None else to_nanoseconds(end, "end")
        if self._start is not None and new_start is not None:
            new_start = max(new_start, self._start)
        if self._end is not None and new_end is not None:
            new_end = min(new_end, self._end)
        kept: list[Stream] = []
        metadata = any(x is not None for x in (collection, name, unit, tags, annotations))
        for stream in self._streams:
            if metadata and not stream.loaded:
                raise StreamsError(
                    f"stream {stream.uuid} has no metadata to filter on: "
                    "await streamset.refresh() first"
                )
            if metadata and not self._keep(stream, collection, name, unit, tags, annotations):
                continue
            kept.append(stream)
        return self._clone(kept, start=new_start, end=new_end)

    @staticmethod
    def _keep(
        stream: Stream,
        collection: str | re.Pattern[str] | None,
        name: str | re.Pattern[str] | None,
        unit: str | re.Pattern[str] | None,
        tags: Mapping[str, str] | None,
        annotations: Mapping[str, Any] | None,
    ) -> bool:
        row = stream._cached()
        if collection is not None and not _text_matches(collection, row.collection):
            return False
        if name is not None and not _text_matches(name, row.name):
            return False
        if unit is not None and not _text_matches(unit, row.unit):
            return False
        if tags and any(row.tags.get(k, "") != v for k, v in tags.items()):
            return False
        if annotations:
            decoded = decode_annotations(row.annotations)
            if any(k not in decoded or decoded[k] != v for k, v in annotations.items()):
                return False
        return True

    def windows(self, width: Any, depth: int = 0) -> StreamSet:
        """A new set whose data methods return ``width``-ns windows (BTrDB semantics)."""
        if depth != 0:
            raise ValueError("depth is deprecated in BTrDB and must be 0")
        ns = duration_ns(width)
        WindowSpec.windows(0, 0, ns)  # validates the width
        return self._clone(_windowing=_Windowing(width=ns))

    def aligned_windows(self, pointwidth: int) -> StreamSet:
        """A new set whose data methods return ``2**pointwidth``-ns aligned windows."""
        WindowSpec.aligned(0, 0, pointwidth)  # validates the pointwidth
        return self._clone(_windowing=_Windowing(pointwidth=pointwidth))

    def unwindowed(self) -> StreamSet:
        """A new set whose data methods return raw points again."""
        return self._clone(_windowing=None)

    async def refresh(self) -> StreamSet:
        """A new set whose streams carry fresh metadata (one catalog query)."""
        if not self._streams:
            return self
        rows = await self._store_rows(refresh=True)
        for stream in self._streams:
            stream._set_row(rows[stream.uuid])
        return self._clone()

    # -- data -------------------------------------------------------------------------
    async def _store_rows(self, refresh: bool = False) -> dict[_uuid.UUID, StreamRow]:
        """Rows of the streams; one catalog query for the ones never loaded."""
        from .errors import StreamNotFoundError

        missing = [s.uuid for s in self._streams if refresh or not s.loaded]
        rows: dict[_uuid.UUID, StreamRow] = {}
        if missing:
            assert self._db is not None
            rows = await self._db.store.get(missing)
            absent = [str(u) for u in missing if u not in rows]
            if absent:
                raise StreamNotFoundError(f"streams not in the catalog: {', '.join(absent)}")
            for stream in self._streams:
                if stream.uuid in rows:
                    stream._set_row(rows[stream.uuid])
        return {s.uuid: s._cached() for s in self._streams}

    async def _series(self) -> list[str]:
        rows = await self._store_rows()
        return [rows[s.uuid].series for s in self._streams]

    async def _columns(self) -> list[Column]:
        """Each stream's data: raw arrays, or windows when a window request is set."""
        if not self._streams:
            return []
        assert self._db is not None
        names = await self._series()
        plane = self._db.data
        if self._windowing is not None:
            stats = await plane.windows(names, self._windowing.spec(self.start, self.end))
            return [stats[n] for n in names]
        found = await plane.read(names, self.start, self.end)
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float64))
        return [found.get(n, empty) for n in names]

    async def values(self, version: int = 0) -> list[list[RawPoint]] | list[list[StatPoint]]:
        """Per stream (set order): its points, or its windows when windowed."""
        check_version(version)
        if self._windowing is not None or not self._streams:
            return [transform.column_points(c) for c in await self._columns()]  # type: ignore[return-value]
        assert self._db is not None
        names = await self._series()
        found = await self._db.data.read(
            names, self.start, self.end, lambda _, arrays: transform.raw_points(*arrays)
        )
        return [found.get(n, []) for n in names]

    async def arrays(self) -> list[Column]:
        """Per stream: ``(times_ns, values)`` arrays, or :class:`WindowStats` when windowed."""
        return await self._columns()

    async def to_arrays(self, agg: str = "mean") -> list[tuple[NDArray[Any], NDArray[Any]]]:
        """Per stream: ``(times_ns, values)``; windowed sets give the ``agg`` statistic."""
        return [
            (transform.column_times(c), transform.column_values(c, agg))
            for c in await self._columns()
        ]

    async def rows(self) -> list[tuple[RawPoint | StatPoint | None, ...]]:
        """Tuples of each stream's point at each time (an outer join), ``None`` in holes."""
        return transform.rows(await self._columns())

    async def to_dataframe(
        self,
        agg: str = "mean",
        name_callable: NameCallable | None = None,
        datetime64_index: bool = True,
    ) -> Any:  # a pandas.DataFrame (pandas is optional)
        """A pandas frame, one column per stream (``agg="all"``: per stream and statistic).

        Indexed by a UTC ``DatetimeIndex`` (``datetime64_index=False``: ns integers);
        holes are NaN. Column names come from ``name_callable`` ("collection/name").
        """
        columns = await self._columns()
        names = [(name_callable or _default_name)(s) for s in self._streams]
        return transform.to_dataframe(
            columns, names, agg=agg, datetime64_index=datetime64_index
        )

    async def to_csv(
        self,
        file: str | os.PathLike[str] | TextIO,
        agg: str = "mean",
        name_callable: NameCallable | None = None,
    ) -> None:
        """Write rows aligned on time (``time`` in ns, then a column per stream)."""
        columns = await self._columns()
        names = [(name_callable or _default_name)(s) for s in self._streams]
        transform.write_csv(file, columns, names, agg=agg)

    async def _edges(self, which: str) -> tuple[RawPoint | None, ...]:
        if not self._streams:
            return ()
        assert self._db is not None
        names = await self._series()
        found = await self._db.data.edge(names, which, self.start, self.end)
        return tuple(found.get(n) for n in names)

    async def earliest(self, version: int = 0) -> tuple[RawPoint | None, ...]:
        """Each stream's first point in the range, or ``None`` (one query)."""
        check_version(version)
        return await self._edges("first")

    async def latest(self, version: int = 0) -> tuple[RawPoint | None, ...]:
        """Each stream's last point in the range, or ``None`` (one query)."""
        check_version(version)
        return await self._edges("last")

    async def current(self, version: int = 0) -> tuple[RawPoint | None, ...]:
        """Each stream's last point before now (``ValueError`` if now is outside the range)."""
        check_version(version)
        now = now_ns()
        if not self.start <= now < self.end:
            raise ValueError("now is outside the set's time range")
        return await self._clone(end=now)._edges("last")

    async def count(  # type: ignore[override]  # BTrDB's count, not Sequence.count
        self, precise: bool = True, version: int = 0
    ) -> int:
        """Points of all streams in the range, exactly (one query)."""
        return sum((await self.counts(version)).values())

    async def counts(self, version: int = 0) -> dict[_uuid.UUID, int]:
        """Points of each stream in the range (one query)."""
        check_version(version)
        if not self._streams:
            return {}
        assert self._db is not None
        names = await self._series()
        found = await self._db.data.counts(names, self.start, self.end)
        return {s.uuid: found.get(n, 0) for s, n in zip(self._streams, names)}

    async def insert(
        self, data_map: Mapping[Any, Any], merge: str = "never"
    ) -> dict[_uuid.UUID, int]:
        """Insert points for several streams in one request (see ``Stream.insert``).

        ``data_map`` maps a stream (or its UUID) to its points. Returns the points sent
        per stream.
        """
        check_merge(merge)
        if not data_map:
            return {}
        assert self._db is not None
        rows = await self._store_rows()
        settings = await self._db.data.settings()
        batch: dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]] = {}
        sent: dict[_uuid.UUID, int] = {}
        for key, points in data_map.items():
            uid = key.uuid if isinstance(key, Stream) else to_uuid(key)
            if uid not in rows:
                raise KeyError(f"no stream {uid} in this set")
            ts, values = normalize_points(points, settings.precision)
            if merge != "never":
                stored = await self[uid].arrays(
                    int(ts.min()) * settings.unit_ns if len(ts) else 0,
                    (int(ts.max()) + 1) * settings.unit_ns if len(ts) else 0,
                )
                unit = settings.unit_ns
                ts, values = apply_merge(merge, ts, values, stored[0] // unit, stored[1])
            if len(ts):
                batch[rows[uid].series] = (ts, values)
            sent[uid] = len(ts)
        if batch:
            await self._db.data.insert_many(batch)
        return sent

    def clone(self) -> StreamSet:
        """A copy (sets are immutable, so this is only for BTrDB compatibility)."""
        return self._clone()
