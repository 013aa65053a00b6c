"""``Stream``: one BTrDB-style stream -- identity and metadata in the catalog, points in
one SiriDB series.

Metadata read from the catalog is cached on the object (``collection``, ``name``,
``unit``, ``property_version``); ``await stream.refresh()`` reads it again. A stream
made by ``StreamDB.stream_from_uuid`` has none until its first catalog read.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .dataplane import units_to_ns
from .errors import NotSupportedError, StreamNotFoundError, StreamsError
from .ingest import apply_merge, check_merge, normalize_points
from .meta import StreamRow, check_collection, check_tags, decode_annotations, encode_annotations
from .points import RawPoint, StatPoint
from .timeargs import MAXIMUM_TIME, MINIMUM_TIME, duration_ns, now_ns, to_nanoseconds
from .transform import raw_points
from .windows import WindowSpec

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .db import StreamDB

__all__ = ["Stream", "check_version"]

_NO_VERSIONS = (
    "SiriDB keeps no versions of a series: every read sees the latest data, so only "
    "version=0 (latest) is accepted"
)


def check_version(version: int | None) -> None:
    """Accept BTrDB's ``version=0`` (latest); refuse a pinned version, saying why."""
    if version not in (0, None):
        raise NotSupportedError(_NO_VERSIONS)


class Stream:
    """A stream of (time, value) points with a collection, tags and annotations."""

    __slots__ = ("_db", "_row", "_uuid")

    def __init__(self, db: StreamDB, uuid: _uuid.UUID, row: StreamRow | None = None) -> None:
        self._db = db
        self._uuid = uuid
        self._row = row

    # -- identity and cached metadata -------------------------------------------------
    @property
    def uuid(self) -> _uuid.UUID:
        """The stream's UUID."""
        return self._uuid

    @property
    def db(self) -> StreamDB:
        """The :class:`StreamDB` this stream belongs to."""
        return self._db

    @property
    def loaded(self) -> bool:
        """True once metadata was read from the catalog (``refresh`` reads it again)."""
        return self._row is not None

    def _cached(self) -> StreamRow:
        if self._row is None:
            raise StreamsError(
                f"stream {self._uuid} has no metadata yet (stream_from_uuid makes no round "
                "trip): await stream.refresh() first"
            )
        return self._row

    @property
    def collection(self) -> str:
        """The collection, as last read from the catalog."""
        return self._cached().collection

    @property
    def name(self) -> str:
        """The ``name`` tag, as last read."""
        return self._cached().name

    @property
    def unit(self) -> str:
        """The ``unit`` tag, as last read ('' when unset)."""
        return self._cached().unit

    @property
    def property_version(self) -> int:
        """The metadata version, as last read; every ``update`` adds one."""
        return self._cached().property_version

    @property
    def series(self) -> str:
        """The SiriDB series holding the points (never changes for a stream)."""
        return self._cached().series

    def _set_row(self, row: StreamRow) -> None:
        self._row = row

    async def refresh(self) -> Stream:
        """Read the metadata from the catalog again (``StreamNotFoundError`` if gone)."""
        rows = await self._db.store.get([self._uuid])
        row = rows.get(self._uuid)
        if row is None:
            raise StreamNotFoundError(f"stream {self._uuid} does not exist")
        self._row = row
        return self

    async def _loaded_row(self, refresh: bool = False) -> StreamRow:
        if refresh or self._row is None:
            await self.refresh()
        assert self._row is not None
        return self._row

    async def series_name(self) -> str:
        """The series name, reading the catalog once if the stream was never loaded."""
        return (await self._loaded_row()).series

    # -- metadata ---------------------------------------------------------------------
    async def exists(self) -> bool:
        """True if the catalog holds this stream (always asks the catalog)."""
        try:
            await self.refresh()
        except StreamNotFoundError:
            return False
        return True

    async def tags(self, refresh: bool = False) -> dict[str, str]:
        """The tags that are set (a copy)."""
        row = await self._loaded_row(refresh)
        return {k: v for k, v in row.tags.items() if v}

    async def annotations(self, refresh: bool = False) -> tuple[dict[str, Any], int]:
        """``(decoded annotations, property_version)`` (copies)."""
        row = await self._loaded_row(refresh)
        return decode_annotations(row.annotations), row.property_version

    async def update(
        self,
        tags: Mapping[str, Any] | None = None,
        annotations: Mapping[str, Any] | None = None,
        collection: str | None = None,
        replace: bool = False,
        expected_version: int | None = None,
    ) -> int:
        """Change tags, annotations and collection in ONE catalog transaction.

        Tags and annotations are merged into the current ones (``None`` tag values
        clear a tag); ``replace=True`` makes ``annotations`` the whole set (the way to
        delete keys). With ``expected_version`` the update happens only if the stream is
        still at that property version, else :class:`ConflictError` carrying the current
        one; without it, concurrent updates are retried on the fresh row. Returns the new
        property version (one more than before, whatever changed). The series, and so the
        points, never move.
        """
        new_tags = check_tags(tags)
        if "name" in new_tags and not new_tags["name"]:
            raise StreamsError("the name tag cannot be cleared")
        new_annotations = encode_annotations(annotations) if annotations is not None else None
        new_collection = check_collection(collection) if collection is not None else None

        def change(row: StreamRow) -> StreamRow:
            merged_tags = {**row.tags, **new_tags}
            if new_annotations is None:
                merged = dict(row.annotations)
            elif replace:
                merged = dict(new_annotations)
            else:
                merged = {**row.annotations, **new_annotations}
            return row.evolve(
                tags=merged_tags,
                annotations=merged,
                collection=new_collection if new_collection is not None else row.collection,
                property_version=row.property_version + 1,
            )

        row = await self._db.store.update(self._uuid, change, expected_version)
        self._row = row
        return row.property_version

    # -- writes -----------------------------------------------------------------------
    async def insert(self, points: Any, merge: str = "never") -> int:
        """Store points; returns how many were sent (after ``merge``).

        ``points``: ``(time, value)`` pairs, a ``(times, values)`` pair of numpy arrays,
        a pandas Series or a DataFrame with ``time``/``value`` columns (see
        :mod:`.ingest`). Up to a million points go in one atomic request.
        """
        check_merge(merge)
        plane = self._db.data
        settings = await plane.settings()
        ts, values = normalize_points(points, settings.precision)
        series = await self.series_name()
        if merge != "never" and len(ts):
            lo, hi = int(ts.min()), int(ts.max())
            unit = settings.unit_ns
            stored = (await plane.read([series], lo * unit, (hi + 1) * unit)).get(series)
            if stored is not None:
                stored_units = stored[0] // unit if unit > 1 else stored[0]
                ts, values = apply_merge(merge, ts, values, stored_units, stored[1])
            else:
                ts, values = apply_merge(
                    merge, ts, values, np.zeros(0, np.int64), np.zeros(0, np.float64)
                )
        if len(ts) == 0:
            return 0
        return await plane.insert(series, ts, values)

    async def delete(self, start: Any, end: Any) -> int:
        """Not possible: a SiriDB server deletes whole series only (see ``obliterate``)."""
        raise NotSupportedError(
            "a SiriDB server cannot delete a range of points, only whole series; "
            "obliterate() removes the stream and all its points"
        )

    async def obliterate(self) -> None:
        """Remove the stream: its series (all points) and its catalog row."""
        series = await self.series_name()
        await self._db.data.drop(series)
        await self._db.store.delete(self._uuid)
        self._row = None

    async def flush(self) -> None:
        """Nothing to do: an acknowledged insert is already stored by the server."""

    async def version(self) -> int:
        """Not possible: SiriDB keeps no data versions."""
        raise NotSupportedError(_NO_VERSIONS)

    # -- reads ------------------------------------------------------------------------
    async def values(
        self, start: Any = MINIMUM_TIME, end: Any = MAXIMUM_TIME, version: int = 0
    ) -> list[RawPoint]:
        """All points with ``start <= time < end``, as :class:`RawPoint` (time in ns)."""
        check_version(version)
        times, values = await self.arrays(start, end)
        return raw_points(times, values)

    async def arrays(
        self, start: Any = MINIMUM_TIME, end: Any = MAXIMUM_TIME
    ) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """``(times_ns, values)`` numpy arrays of the points in ``[start, end)``."""
        series = await self.series_name()
        found = await self._db.data.read(
            [series], to_nanoseconds(start, "start"), to_nanoseconds(end, "end")
        )
        arrays: tuple[NDArray[Any], NDArray[np.float64]] = found.get(
            series, (np.zeros(0, np.int64), np.zeros(0, np.float64))
        )
        return arrays

    async def iter_arrays(
        self, start: Any = MINIMUM_TIME, end: Any = MAXIMUM_TIME, chunk: int = 100_000
    ) -> AsyncIterator[tuple[NDArray[Any], NDArray[np.float64]]]:
        """``(times_ns, values)`` chunks of at most ``chunk`` points, in time order.

        Memory stays bounded by the chunk whatever the range holds (a single time with
        more than ``chunk`` duplicate points is one chunk).
        """
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        series = await self.series_name()
        plane = self._db.data
        precision = (await plane.settings()).precision
        async for part in plane.chunks(
            [series], to_nanoseconds(start, "start"), to_nanoseconds(end, "end"), chunk
        ):
            found = part.get(series)
            if found is not None:
                yield units_to_ns(found[0], precision), found[1]

    async def iter_values(
        self, start: Any = MINIMUM_TIME, end: Any = MAXIMUM_TIME, chunk: int = 100_000
    ) -> AsyncIterator[RawPoint]:
        """The points of ``[start, end)`` one by one, read ``chunk`` points at a time."""
        new = tuple.__new__
        async for times, values in self.iter_arrays(start, end, chunk):
            for pair in zip(times.tolist(), values.tolist()):
                yield new(RawPoint, pair)

    async def _windows(self, spec: WindowSpec) -> list[StatPoint]:
        series = await self.series_name()
        stats = await self._db.data.windows([series], spec)
        return stats[series].points()

    async def windows(
        self, start: Any, end: Any, width: Any, depth: int = 0, version: int = 0
    ) -> list[StatPoint]:
        """Statistics of ``[start + k*width, start + (k+1)*width)`` windows (BTrDB semantics).

        ``end`` drops to ``start + width * ((end - start) // width)``; empty windows are
        left out; :attr:`StatPoint.time` is the window's start.
        """
        check_version(version)
        if depth != 0:
            raise ValueError("depth is deprecated in BTrDB and must be 0")
        spec = WindowSpec.windows(
            to_nanoseconds(start, "start"), to_nanoseconds(end, "end"), duration_ns(width)
        )
        return await self._windows(spec)

    async def aligned_windows(
        self, start: Any, end: Any, pointwidth: int, version: int = 0
    ) -> list[StatPoint]:
        """Statistics of ``2**pointwidth`` ns windows aligned to multiples of their width.

        The low ``pointwidth`` bits of ``start`` and ``end`` are cleared; empty windows
        are left out.
        """
        check_version(version)
        spec = WindowSpec.aligned(
            to_nanoseconds(start, "start"), to_nanoseconds(end, "end"), pointwidth
        )
        return await self._windows(spec)

    async def nearest(
        self, time: Any, version: int = 0, backward: bool = False
    ) -> RawPoint | None:
        """The first point at or after ``time``, or (``backward``) the last one before it."""
        check_version(version)
        series = await self.series_name()
        return await self._db.data.nearest(series, to_nanoseconds(time), backward)

    async def earliest(self, version: int = 0) -> RawPoint | None:
        """The first point, or ``None`` for an empty stream."""
        check_version(version)
        series = await self.series_name()
        found = await self._db.data.edge([series], "first", MINIMUM_TIME, MAXIMUM_TIME)
        return found.get(series)

    async def latest(self, version: int = 0) -> RawPoint | None:
        """The last point, or ``None`` for an empty stream."""
        check_version(version)
        series = await self.series_name()
        found = await self._db.data.edge([series], "last", MINIMUM_TIME, MAXIMUM_TIME)
        return found.get(series)

    async def current(self, version: int = 0) -> RawPoint | None:
        """The last point before now, or ``None``."""
        return await self.nearest(now_ns(), version, backward=True)

    async def count(
        self,
        start: Any = MINIMUM_TIME,
        end: Any = MAXIMUM_TIME,
        pointwidth: int | None = None,
        precise: bool = True,
        version: int = 0,
    ) -> int:
        """The exact number of points in ``[start, end)`` (one query; always precise)."""
        check_version(version)
        series = await self.series_name()
        found = await self._db.data.counts(
            [series], to_nanoseconds(start, "start"), to_nanoseconds(end, "end")
        )
        return found.get(series, 0)

    # -- dunder -----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and other._uuid == self._uuid

    def __hash__(self) -> int:
        return hash(self._uuid)

    def __repr__(self) -> str:
        if self._row is None:
            return f"<Stream {self._uuid}>"
        return f"<Stream collection={self._row.collection} name={self._row.name}>"
