"""The data plane: points of many series read and written through one ``TsClient``.

A read of many streams names all their series in one query (``select * from "a", "b",
... between x and y``), never one query per stream; ``read`` splits the names over two
queries in flight, so that the client decodes one answer while the server builds the
other. Reads that must stay within a memory bound (windows, iterators) are planned
first: one ``select count() ... merge as 'n' using sum()`` tells how many points the
range holds; if more than the chunk budget, a histogram (``count(w)`` over up to a
thousand cells) splits the range into chunks of at most ``budget`` points (a cell with
more is split by another histogram). So memory stays bounded by the chunk size whatever
the range holds, and a read that fits one chunk costs two requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import QueryError
from ..protocol.constants import PRECISION_NAMES
from ..ql import quote_name, quote_regex
from ..timeutil import INT64_MAX, NS_PER_UNIT
from .errors import SeriesTypeError, StreamsError
from .points import RawPoint
from .timeargs import SERVER_END, UnitRange, unit_range
from .windows import WindowAccumulator, WindowSpec, WindowStats

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ..client import TsClient

__all__ = ["Arrays", "DataPlane", "ServerSettings"]

#: (timestamps, values): int64 (database units or ns, as documented) and float64.
Arrays = tuple["NDArray[Any]", "NDArray[np.float64]"]

_LIMIT_TEXT = "maximum number of selected points"
_HISTOGRAM_CELLS = 1024
_PARALLEL = 2
_INSERT_BATCH = 1_000_000
_DROP_TAIL = " set ignore_threshold true"


@dataclass(frozen=True)
class ServerSettings:
    """What the data plane needs to know about the database, read once."""

    precision: int
    select_points_limit: int
    version: str
    list_limit: int = 10_000

    @property
    def unit_ns(self) -> int:
        """Nanoseconds per database unit."""
        return NS_PER_UNIT[self.precision]


def _names(names: Sequence[str]) -> str:
    return ", ".join(quote_name(n) for n in names)


def _as_float(name: str, values: NDArray[Any]) -> NDArray[np.float64]:
    if values.dtype == np.float64:
        return values
    if values.dtype.kind in "iu":
        return values.astype(np.float64)
    if values.dtype == object and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.tolist()
    ):
        return values.astype(np.float64)
    raise SeriesTypeError(f"series {name!r} holds strings; a stream holds numbers")


def units_to_ns(ts: NDArray[np.int64], precision: int) -> NDArray[Any]:
    """Database units to ns: int64, or Python ints (object) beyond int64 (e.g. year 2300 in s)."""
    unit = NS_PER_UNIT[precision]
    if unit == 1 or len(ts) == 0:
        return ts
    if int(ts.max()) <= INT64_MAX // unit:
        return ts * unit
    return np.array([int(t) * unit for t in ts.tolist()], dtype=object)


class DataPlane:
    """Points of SiriDB series for the streams layer, through one ``TsClient``.

    ``chunk_points`` bounds the points one read request returns when the size is not
    known in advance (windows, iterators); it defaults to the server's
    ``select_points_limit``. ``names_per_query`` bounds the series one query names.
    """

    def __init__(
        self,
        client: TsClient,
        *,
        chunk_points: int | None = None,
        names_per_query: int = 1000,
    ) -> None:
        if chunk_points is not None and chunk_points < 1:
            raise ValueError("chunk_points must be at least 1")
        if names_per_query < 1:
            raise ValueError("names_per_query must be at least 1")
        self.client = client
        self._chunk_points = chunk_points
        self._names_per_query = names_per_query
        self._settings: ServerSettings | None = None

    # -- settings ---------------------------------------------------------------------
    async def settings(self) -> ServerSettings:
        """Time precision, points limit and version of the database (one query, cached)."""
        if self._settings is None:
            answer = await self.client.query(
                "show time_precision, select_points_limit, list_limit, version"
            )
            found = {item["name"]: item["value"] for item in answer["data"]}
            self._settings = ServerSettings(
                precision=PRECISION_NAMES.index(found["time_precision"]),
                select_points_limit=int(found.get("select_points_limit", 1_000_000)),
                version=str(found.get("version", "")),
                list_limit=int(found.get("list_limit", 10_000)),
            )
        return self._settings

    async def budget(self) -> int:
        """Points per read request when reading in chunks."""
        settings = await self.settings()
        if self._chunk_points is not None:
            return min(self._chunk_points, settings.select_points_limit)
        return settings.select_points_limit

    def _batches(self, names: Sequence[str]) -> list[Sequence[str]]:
        size = self._names_per_query
        return [names[i : i + size] for i in range(0, len(names), size)]

    async def _select(self, names: Sequence[str], rng: UnitRange) -> dict[str, Arrays]:
        answer = await self.client.query(
            f"select * from {_names(names)}{rng.clause()}", as_arrays=True
        )
        return {name: (ts, _as_float(name, values)) for name, (ts, values) in answer.items()}

    # -- raw points -------------------------------------------------------------------
    async def read(
        self,
        names: Sequence[str],
        start_ns: int,
        end_ns: int,
        convert: Callable[[str, Arrays], Any] | None = None,
    ) -> dict[str, Any]:
        """All points of ``names`` in ``[start_ns, end_ns)``: ``{name: (ts_ns, values)}``.

        The names go in at most two queries in flight at once (more only past
        ``names_per_query`` names), so the client decodes one answer while the server
        builds the other; ``convert(name, arrays)``, when given, turns each series into
        what is returned as its answer arrives. A query the server refuses for its
        points limit is read in planned chunks instead.
        """
        settings = await self.settings()
        rng = unit_range(start_ns, end_ns, settings.precision)
        if rng.empty or not names:
            return {}
        groups = self._batches(names)
        if len(groups) == 1 and len(names) >= _PARALLEL:
            half = -(-len(names) // _PARALLEL)
            groups = [names[i : i + half] for i in range(0, len(names), half)]
        slots = asyncio.Semaphore(_PARALLEL)

        async def one(group: Sequence[str]) -> dict[str, Any]:
            async with slots:
                try:
                    found = await self._select(group, rng)
                except QueryError as exc:
                    if not _limit_error(exc):
                        raise
                    self._settings = None  # read the (maybe lowered) limit again
                    found = await self._read_chunked(group, rng)
            out: dict[str, Any] = {}
            for name, (ts, values) in found.items():
                arrays = (units_to_ns(ts, settings.precision), values)
                out[name] = convert(name, arrays) if convert is not None else arrays
            return out

        merged: dict[str, Any] = {}
        for part in await asyncio.gather(*(one(g) for g in groups)):
            merged.update(part)
        return merged

    async def _read_chunked(self, names: Sequence[str], rng: UnitRange) -> dict[str, Arrays]:
        parts: dict[str, list[Arrays]] = {}
        async for chunk in self._chunks_in(names, rng, await self.budget()):
            for name, arrays in chunk.items():
                parts.setdefault(name, []).append(arrays)
        return {
            name: (np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces]))
            for name, pieces in parts.items()
        }

    async def chunks(
        self, names: Sequence[str], start_ns: int, end_ns: int, budget: int | None = None
    ) -> AsyncIterator[dict[str, Arrays]]:
        """Chunks of ``{name: (ts_units, values)}`` in time order, each at most ``budget`` points.

        Timestamps stay in database units (see :meth:`settings`); several batches of
        names are read one after the other.
        """
        settings = await self.settings()
        rng = unit_range(start_ns, end_ns, settings.precision)
        if rng.empty or not names:
            return
        limit = await self.budget()
        if budget is not None:
            limit = min(budget, settings.select_points_limit)
        for batch in self._batches(names):
            async for chunk in self._chunks_in(batch, rng, limit):
                yield chunk

    async def _chunks_in(
        self, names: Sequence[str], rng: UnitRange, budget: int, *, histogram: bool = False
    ) -> AsyncIterator[dict[str, Arrays]]:
        async for part in self.plan(names, rng, budget, histogram=histogram):
            try:
                chunk = await self._select(names, part)
            except QueryError as exc:
                # the limit was lowered, or points written since the plan pushed this
                # part past it: read the limit again and split the part further
                if not _limit_error(exc) or part.end - part.start <= 1:
                    raise
                self._settings = None
                smaller = min(max(1, budget // 2), await self.budget())
                async for sub in self._chunks_in(names, part, smaller, histogram=True):
                    yield sub
                continue
            if chunk:
                yield chunk

    async def plan(
        self, names: Sequence[str], rng: UnitRange, budget: int, *, histogram: bool = False
    ) -> AsyncIterator[UnitRange]:
        """Consecutive sub-ranges of ``rng`` holding at most ``budget`` points each.

        First one ``count()`` of the whole range (cheap: no points travel); when it fits
        the budget, that is the plan. Else a histogram splits it. Ranges without points
        are skipped; a single timestamp holding more than ``budget`` points (duplicates)
        is one range of its own.
        """
        if rng.empty:
            return
        if not histogram:
            answer = await self.client.query(
                f"select count() from {_names(names)}{rng.clause()} merge as 'n' using sum()"
            )
            totals: list[list[int]] = next(iter(answer.values()), [])
            total = int(totals[0][1]) if totals else 0
            if total == 0:
                return
            if total <= budget:
                yield rng
                return
        width, cells_found = await self._histogram(names, rng)
        start = end = -1
        total = 0
        for label, count in cells_found:
            label = label if label >= 0 else label + (1 << 64)  # uint64 labels past int64
            lo = max(rng.start, label - width + 1)
            hi = min(rng.end, label + 1, SERVER_END)
            if count > budget:
                if total:
                    yield UnitRange(start, end)
                    total = 0
                if hi - lo <= 1:
                    yield UnitRange(lo, hi)
                else:
                    async for sub in self.plan(names, UnitRange(lo, hi), budget, histogram=True):
                        yield sub
                continue
            if total and total + count > budget:
                yield UnitRange(start, end)
                total = 0
            if not total:
                start = lo
            end = hi
            total += count
        if total:
            yield UnitRange(start, end)

    async def _histogram(
        self, names: Sequence[str], rng: UnitRange
    ) -> tuple[int, list[list[int]]]:
        """``(cell width, [[label, points], ...])`` of ``rng``: counts of all names per cell.

        Every series yields up to one count per cell, which the server counts against
        its points limit: the cells are as many as that allows (at most 1,024).
        """
        for attempt in range(2):
            settings = await self.settings()
            per_series = settings.select_points_limit // max(1, len(names))
            cells = max(8, min(_HISTOGRAM_CELLS, per_series))
            width = max(1, -(-(rng.end - rng.start) // cells))
            try:
                answer = await self.client.query(
                    f"select count({width}) from {_names(names)}{rng.clause()} "
                    f"merge as 'n' using sum({width})"
                )
            except QueryError as exc:
                if attempt or not _limit_error(exc):
                    raise
                self._settings = None  # the limit changed: read it again
                continue
            found: list[list[int]] = next(iter(answer.values()), [])
            return width, found
        raise AssertionError("unreachable")

    # -- windows ----------------------------------------------------------------------
    async def windows(self, names: Sequence[str], spec: WindowSpec) -> dict[str, WindowStats]:
        """BTrDB windows of every name (see :mod:`.windows`), from chunks of raw points."""
        settings = await self.settings()
        accumulators = {name: WindowAccumulator(spec, settings.precision) for name in names}
        if spec.count:
            async for chunk in self.chunks(names, spec.start, spec.end):
                for name, (ts, values) in chunk.items():
                    accumulators[name].add(ts, values)
        return {name: acc.result() for name, acc in accumulators.items()}

    # -- single points and counts -----------------------------------------------------
    async def edge(
        self, names: Sequence[str], which: str, start_ns: int, end_ns: int
    ) -> dict[str, RawPoint]:
        """The first (``which="first"``) or last point of each name in the range."""
        settings = await self.settings()
        return await self._edge(names, which, unit_range(start_ns, end_ns, settings.precision))

    async def _edge(self, names: Sequence[str], which: str, rng: UnitRange) -> dict[str, RawPoint]:
        if which not in ("first", "last"):
            raise ValueError(f"which must be 'first' or 'last', not {which!r}")
        settings = await self.settings()
        out: dict[str, RawPoint] = {}
        if rng.empty or not names:
            return out
        unit = settings.unit_ns
        for batch in self._batches(names):
            answer = await self.client.query(f"select {which}() from {_names(batch)}{rng.clause()}")
            for name, points in answer.items():
                if points:
                    ts, value = points[0]
                    out[name] = RawPoint(ts * unit, _float_value(name, value))
        return out

    async def counts(self, names: Sequence[str], start_ns: int, end_ns: int) -> dict[str, int]:
        """Points of each name in the range (names without points are absent)."""
        settings = await self.settings()
        rng = unit_range(start_ns, end_ns, settings.precision)
        out: dict[str, int] = {}
        if rng.empty or not names:
            return out
        for batch in self._batches(names):
            answer = await self.client.query(f"select count() from {_names(batch)}{rng.clause()}")
            for name, points in answer.items():
                if points:
                    out[name] = int(points[0][1])
        return out

    async def nearest(self, name: str, time_ns: int, backward: bool) -> RawPoint | None:
        """The first point at or after ``time_ns``, or (backward) the last one before it."""
        settings = await self.settings()
        edge = unit_range(time_ns, time_ns, settings.precision).start
        if backward:
            found = await self._edge([name], "last", UnitRange(0, edge))
        else:
            found = await self._edge([name], "first", UnitRange(edge, SERVER_END))
        return found.get(name)

    # -- writes and series ------------------------------------------------------------
    async def insert(self, name: str, ts: NDArray[np.int64], values: NDArray[np.float64]) -> int:
        """Insert points of one series (timestamps in database units)."""
        return await self.insert_many({name: (ts, values)})

    async def insert_many(self, batch: dict[str, Arrays]) -> int:
        """Insert points of several series; one request per million points (each atomic).

        Series are packed together up to a million points a request (the frame limit
        is 40 MiB, about 2 M points); a longer series is split over requests.
        """
        total = 0
        pending: dict[str, Arrays] = {}
        size = 0
        for name, (ts, values) in batch.items():
            for i in range(0, len(ts), _INSERT_BATCH):
                part = (ts[i : i + _INSERT_BATCH], values[i : i + _INSERT_BATCH])
                if pending and size + len(part[0]) > _INSERT_BATCH:
                    await self.client.insert(pending)
                    pending, size = {}, 0
                pending[name] = part  # a name's next part always starts a new request
                size += len(part[0])
                total += len(part[0])
        if pending:
            await self.client.insert(pending)
        return total

    async def drop(self, name: str) -> None:
        """Drop one series (whatever share of the database it is)."""
        await self.client.query(f"drop series {quote_name(name)}{_DROP_TAIL}")

    async def list_series(self, pattern: str | None = None) -> list[tuple[str, int, str]]:
        """``(name, length, type)`` of the series whose whole name matches ``pattern``."""
        where = f" {quote_regex(pattern)}" if pattern is not None else ""
        answer = await self.client.query(f"list series name, length, type{where}")
        rows = answer["series"]
        if len(rows) >= (await self.settings()).list_limit:
            raise StreamsError(
                f"{len(rows)} series match {pattern!r}, the most the server lists at once "
                "(list_limit): narrow the pattern"
            )
        return [(row[0], int(row[1]), str(row[2])) for row in rows]

    async def existing(self, names: Sequence[str]) -> dict[str, tuple[int, str]]:
        """``{name: (length, type)}`` for the names that exist as series."""
        out: dict[str, tuple[int, str]] = {}
        size = min(self._names_per_query, (await self.settings()).list_limit)
        for i in range(0, len(names), size):
            answer = await self.client.query(
                f"list series name, length, type {_names(names[i : i + size])}"
            )
            for row in answer["series"]:
                out[row[0]] = (int(row[1]), str(row[2]))
        return out


def _limit_error(exc: QueryError) -> bool:
    """True for the server's "maximum number of selected points" refusal."""
    return _LIMIT_TEXT in str(exc)


def _float_value(name: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise SeriesTypeError(f"series {name!r} holds strings; a stream holds numbers")
