"""BufferedWriter: batching ingest that loses nothing (DESIGN decision 5).

Points are buffered in add order, cut into batches by size or age (one insert per
batch, same-series points merged) and delivered by one background task. Memory is
bounded by ``max_buffer_points`` (``add`` waits, or raises :class:`BufferFull`). With a
``spool_dir`` every batch is journaled to disk before it is sent and deleted only after
the server acknowledged it, so neither an outage nor a crash of the writer loses it.
Unknown outcomes are resolved by reading the batch's time window back (decision 1).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .exceptions import (
    AnswerTooLarge,
    ClientClosedError,
    InsertError,
    InsertOutcomeUnknown,
    ProtocolError,
    QueryError,
    TsConnectorError,
    TsTimeoutError,
)
from .ql import quote_name
from .spool import (
    Spool,
    SpoolCorrupted,
    SpoolDamage,
    SpoolRecord,
    points_as_pairs,
    unencodable_series,
)
from .timeutil import INT64_MAX, INT64_MIN

if TYPE_CHECKING:
    from .client import TsClient

__all__ = [
    "BufferFull",
    "BufferedWriter",
    "WriterClosedError",
    "WriterStats",
    "check_series_name",
]

log = logging.getLogger("tsconnector.writer")

Ambiguous = Literal["check", "resend"]
ErrorCallback = Callable[[BaseException, dict[str, list[Any]]], None]

#: Series per read-back query when checking an insert whose outcome is unknown.
CHECK_GROUP = 64


class BufferFull(TsConnectorError):
    """``add(..., block=False)`` found no room in the writer's buffer."""


class WriterClosedError(TsConnectorError):
    """Points were added to a writer that is closing or closed."""


@dataclass(frozen=True)
class WriterStats:
    """A snapshot of a writer's counters (points unless said otherwise).

    ``failed``: points given up (``on_error``); ``lost``: points of spooled batches that
    damaged spool bytes destroyed (also reported through ``on_error`` and the log).
    """

    added: int
    buffered: int
    spooled: int
    sent: int
    replayed: int
    failed: int
    lost: int
    checked_present: int
    batches_sent: int
    retries: int
    ambiguous: int
    peak_buffered: int
    position: int
    spool_bytes: int
    last_error: str | None


# --------------------------------------------------------------------- points


def _is_numpy_pair(points: Any) -> bool:
    return (
        isinstance(points, tuple)
        and len(points) == 2
        and hasattr(points[0], "dtype")
        and hasattr(points[1], "dtype")
    )


#: SiriDB refuses series names of this many bytes (UTF-8) or more.
NAME_BYTES_LIMIT = 65535


def check_series_name(series: Any) -> None:
    """A series name must be a non-empty str that UTF-8 can encode, under 65535 bytes."""
    if not isinstance(series, str) or not series:
        raise TypeError(f"series name must be a non-empty str, not {series!r}")
    if not series.isascii():
        try:
            size = len(series.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"series name {series!r} cannot be encoded as UTF-8 ({exc.reason} at "
                f"position {exc.start})"
            ) from None
    else:
        size = len(series)
    if size >= NAME_BYTES_LIMIT:
        raise ValueError(f"series name of {size} bytes is too long (SiriDB allows < 65535)")


def _check_text(series: str, value: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"series {series!r}: string value {value!r} cannot be encoded as UTF-8 "
                f"({exc.reason} at position {exc.start})"
            ) from None


def _check_list(series: str, points: list[Any]) -> None:
    """Refuse what the server would reject, so one bad point never sinks a batch."""
    try:
        lengths = set(map(len, points))
    except TypeError:  # a point without a length (a number...)
        lengths = set()
    if lengths != {2}:
        bad = next(
            (p for p in points if not isinstance(p, (list, tuple)) or len(p) != 2), points[0]
        )
        raise ValueError(
            f"series {series!r}: every point must be a (timestamp, value) pair, got {bad!r}"
        )
    stamps, values = zip(*points)
    if not set(map(type, stamps)) <= {int}:
        raise TypeError(f"series {series!r}: timestamps must be int")
    if min(stamps) < 0 or max(stamps) > INT64_MAX:
        raise OverflowError(f"series {series!r}: timestamp out of range")
    kinds = set(map(type, values))
    if not kinds <= {int, float, str}:
        bad_kinds = sorted(k.__name__ for k in kinds - {int, float, str})
        raise TypeError(f"series {series!r}: unsupported value type(s) {', '.join(bad_kinds)}")
    if int in kinds:
        ints = [v for v in values if type(v) is int]
        if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
            raise OverflowError(f"series {series!r}: integer value out of int64 range")
    if str in kinds:
        for value in values:
            if type(value) is str:
                _check_text(series, value)


def _check_point(series: Any, ts: Any, value: Any) -> None:
    """The checks of :func:`_check_list` for one point, without building lists."""
    if type(series) is not str or not series.isascii() or not 0 < len(series) < NAME_BYTES_LIMIT:
        check_series_name(series)
    if type(ts) is not int:
        raise TypeError(f"series {series!r}: timestamps must be int")
    if not 0 <= ts <= INT64_MAX:
        raise OverflowError(f"series {series!r}: timestamp out of range")
    kind = type(value)
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise OverflowError(f"series {series!r}: integer value out of int64 range")
    elif kind is str:
        _check_text(series, value)
    elif kind is not float:
        raise TypeError(f"series {series!r}: unsupported value type {kind.__name__}")


def _numpy_points(series: str, ts: Any, values: Any) -> tuple[Any, Any] | list[Any]:
    """Copies of numpy ``(timestamps, values)`` in wire-friendly dtypes (or pairs for text)."""
    import numpy as np

    ts = np.asarray(ts)
    values = np.asarray(values)
    if ts.ndim != 1 or values.shape != ts.shape:
        raise ValueError(f"series {series!r}: timestamps and values must be 1-d, same length")
    if ts.dtype.kind not in "iu":
        raise TypeError(f"series {series!r}: timestamps must be an integer array")
    if len(ts) and (int(ts.min()) < 0 or int(ts.max()) > INT64_MAX):
        raise OverflowError(f"series {series!r}: timestamp out of range")
    ts = ts.astype(np.int64, copy=True)
    kind = values.dtype.kind
    if kind == "f":
        return ts, values.astype(np.float64, copy=True)
    if kind in "iu":
        if len(values) and int(values.max()) > INT64_MAX:
            raise OverflowError(f"series {series!r}: integer value out of int64 range")
        return ts, values.astype(np.int64, copy=True)
    if kind in "UO":
        pairs = list(zip(ts.tolist(), values.tolist()))
        _check_list(series, pairs)
        return pairs
    raise TypeError(f"series {series!r}: unsupported value dtype {values.dtype}")


def _normalize(series: Any, points: Any, validate: bool) -> tuple[Any, int]:
    """``(piece, count)``: a private list of pairs or a numpy ``(ts, values)`` pair."""
    check_series_name(series)
    if _is_numpy_pair(points):
        piece: Any = _numpy_points(series, points[0], points[1])
    elif hasattr(points, "ndim") and getattr(points, "ndim", 0) == 2:
        if points.shape[1] != 2:
            raise ValueError(f"series {series!r}: a points array must have shape (n, 2)")
        piece = _numpy_points(series, points[:, 0], points[:, 1])
    else:
        piece = list(points)
        if validate and piece:
            _check_list(series, piece)
    return piece, len(piece[0]) if isinstance(piece, tuple) else len(piece)


def _split(piece: Any, k: int) -> tuple[Any, Any]:
    if isinstance(piece, tuple):
        return (piece[0][:k], piece[1][:k]), (piece[0][k:], piece[1][k:])
    return piece[:k], piece[k:]


def _merge(parts: list[Any]) -> Any:
    """One series' parts (lists of pairs or numpy pairs) as one piece."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, tuple) for p in parts):
        import numpy as np

        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    merged: list[Any] = []
    for part in parts:
        merged.extend(points_as_pairs(part) if isinstance(part, tuple) else part)
    return merged


def _value_key(value: Any) -> Any:
    """A comparable key for a stored value (NaN equals NaN here)."""
    if isinstance(value, float) and value != value:
        return ("nan",)
    return value


def _pairs(piece: Any) -> Sequence[Any]:
    return points_as_pairs(piece) if isinstance(piece, tuple) else piece


def _bounds(piece: Any) -> tuple[int, int]:
    if isinstance(piece, tuple):
        return int(piece[0].min()), int(piece[0].max())
    stamps = [p[0] for p in piece]
    return min(stamps), max(stamps)


def _points_of(data: Mapping[str, Any]) -> int:
    return sum(len(p[0]) if isinstance(p, tuple) else len(p) for p in data.values())


class _Piece:
    """Points of one series added together (or by consecutive ``add`` calls)."""

    __slots__ = ("data", "n", "owned", "series", "t")

    def __init__(self, series: str, data: Any, n: int, t: float, owned: bool) -> None:
        self.series = series
        self.data = data
        self.n = n
        self.t = t
        self.owned = owned


class _Batch:
    """One insert's worth of points on its way to the server."""

    __slots__ = ("check", "data", "done", "end", "isolate", "points", "record", "rejected",
                 "replay")

    def __init__(self, data: dict[str, Any] | None, points: int, end: int) -> None:
        self.data = data
        self.points = points
        self.end = end
        self.record: SpoolRecord | None = None
        self.check = False
        self.replay = False  # its points were read back from the spool
        self.isolate = False
        self.done: set[str] = set()
        self.rejected: set[str] = set()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# --------------------------------------------------------------------- writer


class BufferedWriter:
    """Batching, bounded, crash-safe ingest through a :class:`~tsconnector.client.TsClient`.

    Use ``async with BufferedWriter(client, ...) as writer:`` (the client must be
    connected). ``ambiguous="check"`` re-sends after an unknown outcome only what a
    read-back finds missing (read in answers of at most ``read_back_points`` points,
    counted first); ``"resend"`` is at-least-once. ``on_error(exc, points)`` is
    called for points given up (rejected by the server, or unsent at a timed-out close
    without a spool).
    """

    def __init__(
        self,
        client: TsClient,
        *,
        max_batch_points: int = 10_000,
        max_delay: float = 1.0,
        max_buffer_points: int = 1_000_000,
        spool_dir: str | Path | None = None,
        on_error: ErrorCallback | None = None,
        ambiguous: Ambiguous = "check",
        insert_timeout: float = 30.0,
        query_timeout: float = 30.0,
        retry_initial: float = 0.1,
        retry_max: float = 10.0,
        close_timeout: float | None = None,
        validate: bool = True,
        spool_segment_bytes: int = 16 << 20,
        read_back_points: int = 200_000,
    ) -> None:
        if max_batch_points < 1:
            raise ValueError("max_batch_points must be at least 1")
        if max_buffer_points < max_batch_points:
            raise ValueError("max_buffer_points must be at least max_batch_points")
        if ambiguous not in ("check", "resend"):
            raise ValueError(f"ambiguous must be 'check' or 'resend', not {ambiguous!r}")
        self.client = client
        self.max_batch_points = max_batch_points
        self.max_delay = max_delay
        self.max_buffer_points = max_buffer_points
        self.on_error = on_error
        self.ambiguous: Ambiguous = ambiguous
        self.insert_timeout = insert_timeout
        self.query_timeout = query_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.close_timeout = close_timeout
        self.validate = validate
        if read_back_points < 1:
            raise ValueError("read_back_points must be at least 1")
        self.read_back_points = read_back_points
        self._spool = (
            Spool(spool_dir, segment_bytes=spool_segment_bytes) if spool_dir is not None else None
        )
        self._io: ThreadPoolExecutor | None = None
        self._sending: _Batch | None = None
        self._pieces: deque[_Piece] = deque()
        self._queue: deque[_Batch] = deque()
        self._buffered = 0  # points in _pieces
        self._loaded = 0  # points of batch data held in memory
        self._writing = 0  # points being written to the spool
        self._spooled = 0  # points in the spool not yet acknowledged
        self._position = 0
        self._cut_lock = asyncio.Lock()
        self._wakeup: asyncio.Event | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry_at = 0.0
        self._attempts = 0
        self._spool_error: OSError | None = None
        self._spool_retry_at = 0.0
        self._spool_failures = 0
        self._closing = False
        self._closed = False
        self._fatal: BaseException | None = None
        self._added = 0
        self._sent = 0
        self._replayed = 0
        self._failed = 0
        self._lost = 0
        self._present = 0
        self._batches_sent = 0
        self._retries = 0
        self._ambiguous_count = 0
        self._peak = 0
        self._last_error: str | None = None

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> BufferedWriter:
        """Open the spool (replaying what a previous process left) and start delivering."""
        if self._task is not None:
            return self
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wakeup = asyncio.Event()
        if self._spool is not None:
            # one thread keeps spool writes in order
            self._io = ThreadPoolExecutor(1, thread_name_prefix="tsconnector-spool")
            records = await loop.run_in_executor(self._io, self._spool.open)
            self._position = self._spool.position
            self._report_damage(self._spool.damage)
            for record in records:
                batch = _Batch(None, record.points, record.end)
                batch.record = record
                batch.check = self.ambiguous == "check"
                self._queue.append(batch)
                self._spooled += record.points
            if records:
                log.info("replaying %d spooled batch(es)", len(records))
        # host state changes may start or end an outage: re-check waiting adds
        self._unsubscribe = self.client.on_host_event(lambda _event: self._notify())
        self._task = loop.create_task(self._run(), name="tsconnector: writer")
        return self

    async def __aenter__(self) -> BufferedWriter:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def position(self) -> int:
        """Points cut into batches so far, in add order; with a spool, these are durable.

        Counted over the spool's lifetime: right after ``start()`` on a spool it tells an
        ingest process how many points of its stream (in add order) the previous
        processes handed over for good, so it can resume its source exactly there.
        """
        return self._position

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has finished."""
        return self._closed

    def stats(self) -> WriterStats:
        """Counters: buffered, spooled, sent, replayed, failed, last error and more."""
        spool = self._spool
        memory = self._buffered + self._writing
        memory += sum(b.points for b in self._queue if b.record is None)
        return WriterStats(
            added=self._added,
            buffered=memory,
            spooled=self._spooled,
            sent=self._sent,
            replayed=self._replayed,
            failed=self._failed,
            lost=self._lost,
            checked_present=self._present,
            batches_sent=self._batches_sent,
            retries=self._retries,
            ambiguous=self._ambiguous_count,
            peak_buffered=self._peak,
            position=self._position,
            spool_bytes=spool.size_bytes if spool is not None else 0,
            last_error=self._last_error,
        )

    # ------------------------------------------------------------------ adding

    async def add(self, series: str, ts: int, value: Any, *, block: bool = True) -> None:
        """Add one point; waits while the buffer is full (``BufferFull`` if not ``block``)."""
        self._check_open()
        if self.validate:
            _check_point(series, ts, value)
        else:
            check_series_name(series)
        if self._buffered + self._loaded >= self.max_buffer_points:
            await self._make_room(1, block)
        loop = self._loop
        assert loop is not None
        last = self._pieces[-1] if self._pieces else None
        if last is not None and last.owned and last.series == series:
            last.data.append((ts, value))
            last.n += 1
        else:
            self._pieces.append(_Piece(series, [(ts, value)], 1, loop.time(), True))
        if self._accepted(1):
            await asyncio.sleep(0)  # let the background task cut and send

    async def add_many(self, data: Mapping[str, Any], *, block: bool = True) -> None:
        """Add ``{series: points}``; points are (ts, value) pairs or numpy (ts, values).

        With ``block=False`` nothing is added and ``BufferFull`` is raised unless all
        points fit at once; otherwise the points enter as room frees up, in order.
        """
        self._check_open()
        items: list[tuple[str, Any, int]] = []
        total = 0
        for series, points in data.items():
            piece, n = _normalize(series, points, self.validate)
            if n:
                items.append((series, piece, n))
                total += n
        if not block and self._buffered + self._loaded + total > self.max_buffer_points:
            raise BufferFull(f"no room for {total} point(s) in the writer's buffer")
        loop = self._loop
        assert loop is not None
        for series, piece, n in items:
            while n:
                room = self.max_buffer_points - self._buffered - self._loaded
                if room <= 0:
                    await self._make_room(1, True)
                    continue
                if n > room:
                    head, piece = _split(piece, room)
                    take, n = room, n - room
                else:
                    head, take, n = piece, n, 0
                self._pieces.append(_Piece(series, head, take, loop.time(), False))
                if self._accepted(take):
                    await asyncio.sleep(0)  # let the background task cut and send

    def _check_open(self) -> None:
        if self._closing:
            raise WriterClosedError("the writer is closing or closed")
        if self._task is None:
            raise WriterClosedError("the writer is not started: use 'async with' or start()")
        if self._fatal is not None:
            raise WriterClosedError(f"the writer stopped: {self._fatal!r}") from self._fatal

    def _accepted(self, n: int) -> bool:
        """Count ``n`` new points; True when a batch is ready (the caller should yield)."""
        before = self._buffered
        self._buffered += n
        self._added += n
        held = self._buffered + self._loaded
        if held > self._peak:
            self._peak = held
        if before == 0:
            self._wake()
        if before // self.max_batch_points != self._buffered // self.max_batch_points:
            self._wake()
            return True
        return False

    @property
    def _outage(self) -> bool:
        """True while batches cannot be delivered (failed attempts or no connected host)."""
        return self._attempts > 0 or not self.client.connected

    async def _make_room(self, n: int, block: bool) -> None:
        """Wait until ``n`` points fit; during an outage, spill the buffer to the spool."""
        loop = self._loop
        assert loop is not None
        while self._buffered + self._loaded + n > self.max_buffer_points:
            if not block:
                raise BufferFull("the writer's buffer is full")
            if self._fatal is not None:
                raise WriterClosedError(f"the writer stopped: {self._fatal!r}") from self._fatal
            spilling = self._spool is not None and self._outage
            if spilling and (self._buffered or self._evictable):
                if self._spool_error is None or loop.time() >= self._spool_retry_at:
                    await self._cut(None)
                    self._evict()
                    if self._spool_error is None:
                        continue
                await self._wait_change(self._spool_retry_at)  # the spool cannot be written
            else:
                await self._wait_change(None)
            self._check_open()

    # ---------------------------------------------------------------- flushing

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every point added before this call is acknowledged by the server.

        Raises ``TsTimeoutError`` after ``timeout`` seconds (nothing is lost: the points
        stay queued or spooled).
        """
        if self._task is None:
            raise WriterClosedError("the writer is not started: use 'async with' or start()")
        await self._cut(None)
        # points added so far: cut (position), being spooled, or still buffered
        target = self._position + self._writing + self._buffered
        await self._wait_for(
            lambda: self._position >= target and (not self._queue or self._queue[0].end > target),
            timeout,
            "flush",
        )

    async def sync(self) -> None:
        """Make every point added so far durable: spooled (fsynced) or, without a spool, sent.

        With a spool that cannot be written (disk full), raises that ``OSError``; the
        points stay in memory and the writer keeps trying.
        """
        if self._spool is None:
            await self.flush()
        else:
            await self._cut(None, strict=True)

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting points, deliver what is left, stop the background task.

        With a spool, close does not wait out an outage: once a delivery attempt failed,
        what is left stays spooled for the next writer on that directory. ``timeout``
        (default ``close_timeout``, None = no limit) bounds the delivery; without a spool,
        what is undelivered then is counted as failed and passed to ``on_error``.
        """
        if self._closed:
            return
        if timeout is None:
            timeout = self.close_timeout
        self._closing = True
        task = self._task
        if task is None:
            self._closed = True
            return
        self._wake()
        try:
            await self._wait_for(task.done, timeout, "close")
        except TsTimeoutError:
            log.warning("writer closing with undelivered points (timeout %s s)", timeout)
        finally:
            if not task.done():
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            await self._finish_close()

    async def _finish_close(self) -> None:
        loop = self._loop
        assert loop is not None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._spool is not None:
            if self._buffered:
                self._spool_retry_at = 0.0  # one last try, now
                try:
                    await self._cut(None, strict=True)
                except Exception as exc:
                    self._give_up(exc, self._take(self._buffered)[0])
            await loop.run_in_executor(self._io, self._spool.close)
            if self._io is not None:
                self._io.shutdown(wait=False)
        else:
            while self._queue:
                batch = self._queue.popleft()
                reason = self._fatal or TsTimeoutError("writer closed before delivery")
                self._give_up(reason, self._remaining(batch))
            if self._buffered:
                reason = self._fatal or TsTimeoutError("writer closed before delivery")
                self._give_up(reason, self._take(self._buffered)[0])
        self._closed = True
        self._notify()

    # ---------------------------------------------------------------- waiting

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            _resolve(fut)

    async def _wait_change(self, deadline: float | None) -> None:
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        handle = loop.call_at(deadline, _resolve, fut) if deadline is not None else None
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()
            if fut in self._waiters:
                self._waiters.remove(fut)

    async def _wait_for(self, done: Callable[[], bool], timeout: float | None, what: str) -> None:
        loop = self._loop
        if loop is None:
            raise WriterClosedError("the writer is not started")
        deadline = None if timeout is None else loop.time() + timeout
        while not done():
            if self._fatal is not None and what != "close":
                raise WriterClosedError(f"the writer stopped: {self._fatal!r}") from self._fatal
            if self._task is not None and self._task.done() and what != "close":
                raise WriterClosedError("the writer is closed")
            if deadline is not None and loop.time() >= deadline:
                raise TsTimeoutError(f"writer {what} timed out")
            await self._wait_change(deadline)

    # ----------------------------------------------------------------- cutting

    def _take(self, limit: int) -> tuple[dict[str, Any], int]:
        """Pop up to ``limit`` points off the buffer front as ``{series: piece}``."""
        parts: dict[str, list[Any]] = {}
        count = 0
        pieces = self._pieces
        while count < limit and pieces:
            piece = pieces[0]
            room = limit - count
            if piece.n <= room:
                pieces.popleft()
                data, k = piece.data, piece.n
            else:
                data, piece.data = _split(piece.data, room)
                piece.n -= room
                k = room
            parts.setdefault(piece.series, []).append(data)
            count += k
        self._buffered -= count
        self._loaded += count
        return {s: _merge(p) for s, p in parts.items()}, count

    async def _cut(self, limit: int | None, *, strict: bool = False) -> None:
        """Turn up to ``limit`` buffered points (all if None) into batches, in add order.

        With a spool each batch is written to it first. When the spool cannot be
        written (disk full, I/O error) the points go back to the buffer front and the
        spool is tried again after a backoff; ``strict`` raises that error instead.
        Series the spool cannot encode are given up (``on_error``), the rest kept.
        """
        async with self._cut_lock:
            remaining = self._buffered if limit is None else min(limit, self._buffered)
            loop = self._loop
            assert loop is not None
            while remaining > 0 and self._buffered:
                if self._spool_error is not None and loop.time() < self._spool_retry_at:
                    if strict:
                        raise self._spool_error
                    return
                data, count = self._take(min(remaining, self.max_batch_points))
                remaining -= count
                if self._spool is None:
                    self._position += count
                    self._queue.append(_Batch(data, count, self._position))
                else:
                    try:
                        record = await self._spool_batch(data, count)
                    except OSError as exc:
                        self._untake(data)
                        self._spool_failed(exc)
                        if strict:
                            raise
                        return
                    self._spool_ok()
                    self._queue_spooled(data, record)
                self._wake()
                self._notify()

    async def _spool_batch(self, data: dict[str, Any], count: int) -> SpoolRecord:
        """Append one batch to the spool (in its thread); give up series it cannot encode.

        ``count`` (all points taken) moves the spool's position even for points given
        up, so ``position`` keeps counting every point accepted by ``add``.
        """
        assert self._spool is not None
        loop = self._loop
        assert loop is not None
        spool = self._spool
        written = loop.run_in_executor(self._io, spool.append, data, count)
        self._writing += count
        try:
            return await asyncio.shield(written)
        except asyncio.CancelledError:
            self._queue_spooled(data, await written)  # cancelled caller: keep it
            raise
        except OSError:
            raise
        except Exception:  # a value the spool cannot encode: find the series at fault
            bad = unencodable_series(data)
            if not bad:
                raise
            for name, exc in bad.items():
                piece = data.pop(name)
                self._loaded -= _points_of({name: piece})
                self._give_up(exc, {name: piece})
            good = _points_of(data)
            return await loop.run_in_executor(
                self._io, functools.partial(spool.append, data, good, skipped=count - good)
            )
        finally:
            self._writing -= count

    def _spool_failed(self, exc: OSError) -> None:
        """Note a failed spool write; the next try waits for a growing backoff."""
        loop = self._loop
        assert loop is not None
        if self._spool_error is None:
            log.error("the spool cannot be written (%s); points stay in memory, adds wait "
                      "when the buffer is full, retrying", exc)
        self._spool_error = exc
        self._spool_failures += 1
        self._last_error = repr(exc)
        delay = min(self.retry_max, self.retry_initial * 2 ** min(self._spool_failures - 1, 30))
        self._spool_retry_at = loop.time() + delay * random.uniform(0.5, 1.0)
        self._notify()

    def _spool_ok(self) -> None:
        if self._spool_error is not None:
            log.warning("the spool is writable again")
        self._spool_error = None
        self._spool_failures = 0
        self._spool_retry_at = 0.0

    def _queue_spooled(self, data: dict[str, Any], record: SpoolRecord) -> None:
        batch = _Batch(data, record.points, record.end)
        batch.record = record
        self._position = record.end
        self._spooled += record.points
        self._queue.append(batch)

    def _untake(self, data: dict[str, Any]) -> None:
        """Put a batch that could not be spooled back at the buffer front."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        count = 0
        for series, piece in reversed(list(data.items())):
            n = len(piece[0]) if isinstance(piece, tuple) else len(piece)
            self._pieces.appendleft(_Piece(series, piece, n, now, False))
            count += n
        self._loaded -= count
        self._buffered += count

    # ---------------------------------------------------------------- delivery

    async def _run(self) -> None:
        """The background task: cut batches when due, deliver the queue head, back off.

        A failure of one step (a spool that cannot be written, a batch that cannot be
        read, a bug) is logged and retried later; only a closed client stops it.
        """
        loop = self._loop
        wakeup = self._wakeup
        assert loop is not None
        assert wakeup is not None
        try:
            while True:
                wakeup.clear()
                if self._fatal is not None:
                    return
                now = loop.time()
                try:
                    if await self._step(now):
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never let one batch stop the writer
                    log.exception("the writer's background step failed; retrying later")
                    self._last_error = repr(exc)
                    self._attempts += 1
                    self._retry_at = now + min(self.retry_max, self.retry_initial * 2 ** min(
                        self._attempts - 1, 30))
                if self._closing and not self._buffered:
                    if not self._queue:
                        return
                    if self._spool is not None and self._outage:
                        log.warning("closing during an outage: %d point(s) stay spooled",
                                    self._spooled)
                        return
                if self._closing and self._spool_error is not None:
                    return  # what cannot be spooled is reported by close()
                deadlines = []
                if self._buffered:
                    deadlines.append(max(self._pieces[0].t + self.max_delay,
                                         self._spool_retry_at))
                if self._queue:
                    deadlines.append(self._retry_at)
                handle = loop.call_at(min(deadlines), wakeup.set) if deadlines else None
                try:
                    await wakeup.wait()
                finally:
                    if handle is not None:
                        handle.cancel()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.exception("the writer's background task failed")
            self._fatal = exc
            self._last_error = repr(exc)
        finally:
            self._notify()

    async def _step(self, now: float) -> bool:
        """Do the next due piece of work; False when nothing is due (wait for a wakeup)."""
        if self._queue and now >= self._retry_at:
            await self._deliver(self._queue[0])  # delivering goes before cutting more
            return True
        if not self._buffered or now < self._spool_retry_at:
            return False
        if self._closing or now - self._pieces[0].t >= self.max_delay:
            await self._cut(None)
        elif self._buffered >= self.max_batch_points:
            await self._cut(self._buffered - self._buffered % self.max_batch_points)
        else:
            return False
        return self._spool_error is None

    def _remaining(self, batch: _Batch) -> dict[str, Any]:
        data = batch.data
        if data is None:
            data = self._spool.read(batch.record) if self._spool and batch.record else {}
        return {s: p for s, p in data.items() if s not in batch.done and s not in batch.rejected}

    async def _deliver(self, batch: _Batch) -> None:
        """One delivery attempt of the queue head; on success it leaves the queue."""
        if batch.data is None:
            assert self._spool is not None
            assert batch.record is not None
            if self._buffered + self._loaded + batch.points > self.max_buffer_points:
                await self._cut(None)  # spill the buffer to make room for this batch
            try:
                batch.data = self._spool.read(batch.record)
            except OSError as exc:  # the disk: try again later
                self._failed_attempt(batch, exc)
                return
            except Exception as exc:  # damaged since it was written: report the loss
                self._lost_from_spool(batch, exc)
                return
            batch.replay = True
            self._loaded += batch.points
        self._sending = batch
        try:
            await self._attempt(batch)
        except ClientClosedError as exc:
            self._last_error = repr(exc)
            self._fatal = exc
            self._release(batch)
        except (InsertOutcomeUnknown, TsTimeoutError, ProtocolError) as exc:
            # unknown outcome (an undecodable answer too): check before sending again
            self._failed_attempt(batch, exc)
            self._ambiguous_count += 1
            if self.ambiguous == "check":
                batch.check = True
        except (TsConnectorError, OSError) as exc:
            self._failed_attempt(batch, exc)
        except Exception as exc:  # a bug must not stop the writer; the batch stays queued
            log.exception("unexpected error while delivering a batch")
            self._failed_attempt(batch, exc)
        else:
            self._finish(batch)
        finally:
            self._sending = None

    async def _attempt(self, batch: _Batch) -> None:
        """Send what is left of ``batch`` (after a read-back when its outcome is unknown)."""
        payload = self._remaining(batch)
        if batch.check and payload:
            payload, present = await self._missing(payload)
            if present:
                self._present += present
                log.info("read-back found %d point(s) already stored", present)
        if not payload:
            return
        retry: Literal["safe", "always"] = "always" if self.ambiguous == "resend" else "safe"
        while payload:
            if batch.isolate:
                name = next(iter(payload))
                part = {name: payload.pop(name)}
            else:
                part, payload = payload, {}
            try:
                await self.client.insert(part, timeout=self.insert_timeout, retry=retry)
            except (InsertError, ValueError, TypeError, OverflowError) as exc:
                if len(part) > 1:
                    batch.isolate = True  # find the series the server rejects
                    payload = part
                    continue
                name = next(iter(part))
                batch.rejected.add(name)
                self._give_up(exc, part)
                continue
            sent = _points_of(part)
            self._sent += sent
            if batch.replay:
                self._replayed += sent
            batch.done.update(part)

    def _failed_attempt(self, batch: _Batch, exc: BaseException) -> None:
        loop = self._loop
        assert loop is not None
        self._last_error = repr(exc)
        self._retries += 1
        self._attempts += 1
        delay = min(self.retry_max, self.retry_initial * 2 ** min(self._attempts - 1, 30))
        self._retry_at = loop.time() + delay * random.uniform(0.5, 1.0)
        log.debug("batch delivery failed (%r); retrying in <= %.2f s", exc, delay)
        self._release(batch)
        self._notify()  # an outage lets waiting adds spill to the spool

    @property
    def _evictable(self) -> bool:
        return any(b.data is not None and b is not self._sending for b in self._queue)

    def _evict(self) -> None:
        """Drop the in-memory copy of spooled batches (not the one being sent)."""
        for batch in self._queue:
            if batch is not self._sending:
                self._release(batch)

    def _release(self, batch: _Batch) -> None:
        """Drop a spooled batch's points from memory between attempts (reloaded when due)."""
        if batch.record is not None and batch.data is not None:
            batch.data = None
            self._loaded -= batch.points

    def _finish(self, batch: _Batch) -> None:
        self._queue.popleft()
        if batch.data is not None:
            self._loaded -= batch.points
            batch.data = None
        if batch.record is not None and self._spool is not None:
            self._spool.ack(batch.record)
            self._spooled -= batch.points
        self._attempts = 0
        self._retry_at = 0.0
        self._batches_sent += 1
        self._notify()

    def _report_damage(self, damage: list[SpoolDamage]) -> None:
        """Count and report what a previous process's spool lost to damaged bytes."""
        for item in damage:
            if item.torn:
                continue  # an interrupted write: nothing acknowledged was in it
            self._lost += item.lost_points or 0
            lost = ("an unknown number of points" if item.lost_points is None
                    else f"{item.lost_points} point(s) in {item.lost_batches} batch(es)")
            exc = SpoolCorrupted(
                f"spool segment {item.segment} is damaged at offset {item.offset} "
                f"({item.size} bytes): {lost} lost; the records after it are kept",
                [item],
            )
            self._last_error = repr(exc)
            self._report(exc, {})

    def _lost_from_spool(self, batch: _Batch, exc: BaseException) -> None:
        """A spooled batch can no longer be read: count it lost, report it, drop it."""
        assert batch.record is not None
        self._queue.popleft()
        self._lost += batch.points
        self._last_error = repr(exc)
        log.error("spooled batch %d (%d point(s)) is unreadable and lost: %s",
                  batch.record.seq, batch.points, exc)
        if self._spool is not None:
            self._spool.ack(batch.record)
            self._spooled -= batch.points
        self._report(exc, {})
        self._notify()

    def _report(self, exc: BaseException, points: dict[str, list[Any]]) -> None:
        if self.on_error is not None:
            try:
                self.on_error(exc, points)
            except Exception:
                log.exception("the writer's on_error callback failed")

    def _give_up(self, exc: BaseException, data: Mapping[str, Any]) -> None:
        n = _points_of(data)
        if not n:
            return
        self._failed += n
        self._last_error = repr(exc)
        log.error("writer gives up %d point(s): %r", n, exc)
        self._report(exc, {s: list(_pairs(p)) for s, p in data.items()})

    # ---------------------------------------------------------------- read-back

    async def _missing(self, data: Mapping[str, Any]) -> tuple[dict[str, list[Any]], int]:
        """``(points not stored, points found stored)`` for ``data`` by reading it back.

        SiriDB keeps duplicates, so stored points are counted per (timestamp, value) and
        only the shortfall is returned.
        """
        names = list(data)
        bounds = {name: _bounds(data[name]) for name in names}
        missing: dict[str, list[Any]] = {}
        present = 0
        for i in range(0, len(names), CHECK_GROUP):
            group = names[i : i + CHECK_GROUP]
            start = min(bounds[n][0] for n in group)
            end = max(bounds[n][1] for n in group)
            stored = await self._read_back(group, start, end)
            for name in group:
                lo, hi = bounds[name]
                have = Counter(
                    (p[0], _value_key(p[1])) for p in stored.get(name, ()) if lo <= p[0] <= hi
                )
                lost = []
                for point in _pairs(data[name]):
                    key = (point[0], _value_key(point[1]))
                    if have[key] > 0:
                        have[key] -= 1
                        present += 1
                    else:
                        lost.append(point)
                if lost:
                    missing[name] = lost
        return missing, present

    async def _read_back(
        self, names: Sequence[str], start: int, end: int, depth: int = 0
    ) -> dict[str, list[Any]]:
        """Stored points of ``names`` in ``[start, end]``, read in bounded pieces.

        The points are counted first; a range holding more than ``read_back_points``
        (a busy series) is split by series, then by time, so that no answer is large.
        """
        counts = await self._count(names, start, end)
        names = [n for n in names if counts.get(n)]
        total = sum(counts[n] for n in names)
        if not names:
            return {}
        if total <= self.read_back_points or (len(names) == 1 and start >= end) or depth > 64:
            return await self._select(names, start, end)
        if len(names) > 1:
            half = len(names) // 2
            first = await self._read_back(names[:half], start, end, depth + 1)
            first.update(await self._read_back(names[half:], start, end, depth + 1))
            return first
        middle = (start + end) // 2
        low = await self._read_back(names, start, middle, depth + 1)
        high = await self._read_back(names, middle + 1, end, depth + 1)
        return {names[0]: low.get(names[0], []) + high.get(names[0], [])}

    async def _count(self, names: Sequence[str], start: int, end: int) -> dict[str, int]:
        """Stored points per series in ``[start, end]`` (one small answer)."""
        answer = await self.client.query(
            f"select count() from {', '.join(quote_name(n) for n in names)} "
            f"between {start} and {end + 1}",
            timeout=self.query_timeout,
        )
        counts: dict[str, int] = {}
        for name, points in dict(answer).items():
            counts[str(name)] = int(points[0][1]) if points else 0
        return counts

    async def _select(self, names: Sequence[str], start: int, end: int) -> dict[str, list[Any]]:
        """Stored points of ``names`` with ``start <= ts <= end``; splits when the server's
        points limit or the client's frame limit refuses the answer."""
        query = (
            f"select * from {', '.join(quote_name(n) for n in names)} "
            f"between {start} and {end + 1}"
        )
        try:
            answer = await self.client.query(query, timeout=self.query_timeout)
        except (QueryError, AnswerTooLarge) as exc:
            if isinstance(exc, QueryError) and "maximum number of selected points" not in str(exc):
                raise
            if len(names) > 1:
                half = len(names) // 2
                first = await self._select(names[:half], start, end)
                first.update(await self._select(names[half:], start, end))
                return first
            if start >= end:
                raise
            middle = (start + end) // 2
            low = await self._select(names, start, middle)
            high = await self._select(names, middle + 1, end)
            return {names[0]: low.get(names[0], []) + high.get(names[0], [])}
        return {str(k): v for k, v in dict(answer).items()}
