"""BufferedWriter: batching, bounded, crash-safe ingest through a TsClient.

Points enter a bounded buffer (:mod:`.buffer`) in add order and are cut into batches by
size or age; with a spool every batch is journaled first (:mod:`.spooling`; batches cut
together share one fsync). Up to ``max_in_flight`` batches are delivered at once, each by
its own task; a batch leaves the queue, and its spool record is acknowledged, only once
it and every batch cut before it were delivered, so the spool always holds exactly a
tail of the batches (what a crash replays). A failed delivery drops back to one batch at
a time with a backoff; a batch whose outcome is unknown is read back first
(:mod:`.readback`) unless ``ambiguous="resend"``.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ..exceptions import (
    ClientClosedError,
    InsertError,
    InsertOutcomeUnknown,
    ProtocolError,
    TsConnectorError,
    TsTimeoutError,
)
from ..protocol.packer import PrecisionRequired, point_timestamp
from ..spool import SpoolRecord
from .batch import Batch
from .buffer import PointBuffer
from .errors import BufferFull, WriterClosedError
from .points import (
    check_point,
    check_series_name,
    frame_items,
    normalize,
    pairs,
    points_of,
    split,
)
from .readback import ReadBack
from .spooling import SpoolChannel, damage_error
from .stats import Counters, WriterStats

if TYPE_CHECKING:
    from ..client import TsClient

__all__ = ["BufferedWriter"]

log = logging.getLogger("tsconnector.writer")

Ambiguous = Literal["check", "resend"]
ErrorCallback = Callable[[BaseException, dict[str, list[Any]]], None]


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class BufferedWriter:
    """Batching, bounded, crash-safe ingest through a :class:`~tsconnector.client.TsClient`.

    Use ``async with BufferedWriter(client, ...) as writer:`` (the client must be
    connected). Batches hold up to ``max_batch_points``; up to ``max_in_flight`` of them
    are sent at once. ``ambiguous="check"`` re-sends after an unknown outcome only what a
    read-back finds missing (read in answers of at most ``read_back_points`` points,
    counted first); ``"resend"`` is at-least-once. ``on_error(exc, points)`` is called
    for points given up (rejected by the server, or unsent at a timed-out close without
    a spool).
    """

    def __init__(
        self,
        client: TsClient,
        *,
        max_batch_points: int = 50_000,
        max_delay: float = 1.0,
        max_buffer_points: int = 1_000_000,
        max_in_flight: int = 4,
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
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if ambiguous not in ("check", "resend"):
            raise ValueError(f"ambiguous must be 'check' or 'resend', not {ambiguous!r}")
        if read_back_points < 1:
            raise ValueError("read_back_points must be at least 1")
        self.client = client
        self.max_batch_points = max_batch_points
        self.max_delay = max_delay
        self.max_buffer_points = max_buffer_points
        self.max_in_flight = max_in_flight
        self.on_error = on_error
        self.ambiguous: Ambiguous = ambiguous
        self.insert_timeout = insert_timeout
        self.query_timeout = query_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.close_timeout = close_timeout
        self.validate = validate
        self.read_back_points = read_back_points
        self._readback = ReadBack(client, query_timeout, read_back_points)
        self._spool = (
            SpoolChannel(spool_dir, spool_segment_bytes) if spool_dir is not None else None
        )
        self._buffer = PointBuffer()
        self._queue: deque[Batch] = deque()  # cut, not yet delivered with all before it
        self._todo: deque[Batch] = deque()  # queued batches waiting for a delivery task
        self._inflight: set[Batch] = set()
        self._cut_count = 0
        self._loaded = 0  # points of batch data held in memory
        #: The database's time precision, once datetime timestamps needed it.
        self._precision: int | None = None
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
        self._stopped = False  # no new deliveries (closed, or the background task ended)
        self._fatal: BaseException | None = None
        self._count = Counters()

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> BufferedWriter:
        """Open the spool (replaying what a previous process left) and start delivering."""
        if self._task is not None:
            return self
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wakeup = asyncio.Event()
        if self._spool is not None:
            records = await self._spool.open()
            self._position = self._spool.position
            self._report_damage()
            for record in records:
                batch = self._new_batch(None, record.points, record.end)
                batch.record = record
                batch.check = self.ambiguous == "check"
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
        c = self._count
        memory = self._buffer.points + self._writing
        memory += sum(b.points for b in self._queue if b.record is None and not b.delivered)
        return WriterStats(
            added=c.added,
            buffered=memory,
            spooled=self._spooled,
            sent=c.sent,
            replayed=c.replayed,
            failed=c.failed,
            lost=c.lost,
            checked_present=c.present,
            batches_sent=c.batches_sent,
            retries=c.retries,
            ambiguous=c.ambiguous,
            peak_buffered=c.peak,
            position=self._position,
            spool_bytes=self._spool.size_bytes if self._spool is not None else 0,
            last_error=c.last_error,
            in_flight=len(self._inflight),
        )

    # ------------------------------------------------------------------ adding

    async def add(self, series: str, ts: Any, value: Any, *, block: bool = True) -> None:
        """Add one point; waits while the buffer is full (``BufferFull`` if not ``block``).

        ``ts`` is an int in database units, or a ``datetime``/``date``/``numpy.datetime64``
        converted exactly to the database's precision, as :meth:`TsClient.insert` does.
        """
        self._check_open()
        if type(ts) is not int:
            ts = await self._db_timestamp(series, ts)
        if self.validate:
            check_point(series, ts, value)
        else:
            check_series_name(series)
        if self._buffer.points + self._loaded >= self.max_buffer_points:
            await self._make_room(1, block)
        loop = self._loop
        assert loop is not None
        self._buffer.add_point(series, ts, value, loop.time())
        if self._accepted(1):
            await asyncio.sleep(0)  # let the background task cut and send

    async def add_many(self, data: Any, *, block: bool = True) -> None:
        """Add ``{series: points}`` or a pandas DataFrame (one series per column, missing
        cells skipped). Points are (ts, value) pairs, numpy ``(timestamps, values)``, an
        ``(n, 2)`` array or a pandas Series (its index gives the timestamps). Timestamps
        are ints in database units, or ``datetime``/``date``/``numpy.datetime64`` values
        converted exactly to the database's precision as :meth:`TsClient.insert` does
        (lists of pairs only with ``validate=True``: unvalidated lists are taken as
        they are).

        With ``block=False`` nothing is added and ``BufferFull`` is raised unless all
        points fit at once; otherwise the points enter as room frees up, in order.
        """
        self._check_open()
        try:
            items, total = self._normalized(data, self._precision)
        except PrecisionRequired:  # datetime timestamps: learn the database's unit once
            self._precision = await self.client.db_time_precision(self.query_timeout)
            items, total = self._normalized(data, self._precision)
        buffer = self._buffer
        if not block and buffer.points + self._loaded + total > self.max_buffer_points:
            raise BufferFull(f"no room for {total} point(s) in the writer's buffer")
        loop = self._loop
        assert loop is not None
        ready = False
        now = loop.time()
        for series, piece, n in items:
            while n:
                room = self.max_buffer_points - buffer.points - self._loaded
                if room <= 0:
                    if ready:
                        ready = False
                        await asyncio.sleep(0)
                    await self._make_room(1, True)
                    now = loop.time()
                    continue
                if n > room:
                    head, piece = split(piece, room)
                    take, n = room, n - room
                else:
                    head, take, n = piece, n, 0
                buffer.add_piece(series, head, take, now)
                ready = self._accepted(take) or ready
        if ready or self._inflight:
            # Let the background task cut and send, and deliveries take their answers:
            # the server works on one batch while the caller adds the next.
            await asyncio.sleep(0)

    async def _db_timestamp(self, series: str, ts: Any) -> int:
        """A timestamp of :meth:`add` that is not an int, in database units (the
        database's precision is read once, on the first datetime)."""
        try:
            return point_timestamp(series, ts, self._precision)
        except PrecisionRequired:
            self._precision = await self.client.db_time_precision(self.query_timeout)
            return point_timestamp(series, ts, self._precision)

    def _normalized(
        self, data: Any, precision: int | None
    ) -> tuple[list[tuple[str, Any, int]], int]:
        """The writer's own checked copy of an ``add_many`` argument, and its points."""
        entries = frame_items(data) if hasattr(data, "columns") else data.items()
        items: list[tuple[str, Any, int]] = []
        total = 0
        validate = self.validate
        for series, points in entries:
            piece, n = normalize(series, points, validate, precision)
            if n:
                items.append((series, piece, n))
                total += n
        return items, total

    def _check_open(self) -> None:
        if self._closing:
            raise WriterClosedError("the writer is closing or closed")
        if self._task is None:
            raise WriterClosedError("the writer is not started: use 'async with' or start()")
        if self._fatal is not None:
            raise WriterClosedError(f"the writer stopped: {self._fatal!r}") from self._fatal

    def _accepted(self, n: int) -> bool:
        """Count ``n`` new points; True when a batch is ready (the caller should yield)."""
        buffered = self._buffer.points
        before = buffered - n
        self._count.added += n
        held = buffered + self._loaded
        if held > self._count.peak:
            self._count.peak = held
        if before == 0:
            self._wake()
        if before // self.max_batch_points != buffered // self.max_batch_points:
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
        while self._buffer.points + self._loaded + n > self.max_buffer_points:
            if not block:
                raise BufferFull("the writer's buffer is full")
            if self._fatal is not None:
                raise WriterClosedError(f"the writer stopped: {self._fatal!r}") from self._fatal
            spilling = self._spool is not None and self._outage
            if spilling and (self._buffer or self._evictable):
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
        target = self._position + self._writing + self._buffer.points
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
            await self._stop_deliveries()
            await self._finish_close()

    async def _stop_deliveries(self) -> None:
        """Cancel the deliveries still running (their batches stay queued or spooled)."""
        self._stopped = True
        tasks = [b.task for b in self._inflight if b.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _finish_close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._spool is not None:
            if self._buffer:
                self._spool_retry_at = 0.0  # one last try, now
                try:
                    await self._cut(None, strict=True)
                except Exception as exc:
                    self._give_up(exc, self._buffer.take(self._buffer.points)[0])
            await self._spool.close()
        else:
            reason = self._fatal or TsTimeoutError("writer closed before delivery")
            while self._queue:
                batch = self._queue.popleft()
                if not batch.delivered:
                    self._give_up(reason, self._remaining(batch))
            if self._buffer:
                self._give_up(reason, self._buffer.take(self._buffer.points)[0])
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

    def _new_batch(self, data: dict[str, Any] | None, points: int, end: int) -> Batch:
        """Queue a batch for delivery (in cut order)."""
        self._cut_count += 1
        batch = Batch(self._cut_count, data, points, end)
        self._queue.append(batch)
        self._todo.append(batch)
        return batch

    def _take(self, limit: int) -> tuple[dict[str, Any], int]:
        data, count = self._buffer.take(limit)
        self._loaded += count
        return data, count

    async def _cut(self, limit: int | None, *, strict: bool = False) -> None:
        """Turn up to ``limit`` buffered points (all if None) into batches, in add order.

        With a spool the batches are written to it first, together (one fsync). When
        the spool cannot be written (disk full, I/O error) the points go back to the
        buffer front and the spool is tried again after a backoff; ``strict`` raises
        that error instead. Series the spool cannot encode are given up (``on_error``).
        """
        async with self._cut_lock:
            loop = self._loop
            assert loop is not None
            buffer = self._buffer
            remaining = buffer.points if limit is None else min(limit, buffer.points)
            if remaining <= 0 or not buffer:
                return
            if self._spool_error is not None and loop.time() < self._spool_retry_at:
                if strict:
                    raise self._spool_error
                return
            cut: list[tuple[dict[str, Any], int]] = []
            while remaining > 0 and buffer:
                data, count = self._take(min(remaining, self.max_batch_points))
                remaining -= count
                cut.append((data, count))
            if self._spool is None:
                for data, count in cut:
                    self._position += count
                    self._new_batch(data, count, self._position)
            else:
                try:
                    records = await self._spool_batches(cut)
                except OSError as exc:
                    for data, _ in reversed(cut):
                        self._loaded -= buffer.untake(data, loop.time())
                    self._spool_failed(exc)
                    if strict:
                        raise
                    return
                self._spool_ok()
                for (data, _), record in zip(cut, records):
                    self._queue_spooled(data, record)
            self._wake()
            self._notify()

    async def _spool_batches(self, cut: list[tuple[dict[str, Any], int]]) -> list[SpoolRecord]:
        """Append batches to the spool (one fsync); give up series it cannot encode.

        Points given up still move the spool's position, so ``position`` keeps counting
        every point accepted by ``add``.
        """
        assert self._spool is not None
        total = sum(count for _, count in cut)
        written = asyncio.ensure_future(self._spool.append(cut))
        self._writing += total
        try:
            records, bad = await asyncio.shield(written)
        except asyncio.CancelledError:
            records, bad = await written  # cancelled caller: keep what was written
            self._given_up_unencodable(bad)
            for (data, _), record in zip(cut, records):
                self._queue_spooled(data, record)
            raise
        finally:
            self._writing -= total
        self._given_up_unencodable(bad)
        return records

    def _given_up_unencodable(self, bad: list[tuple[str, BaseException, Any]]) -> None:
        for name, exc, piece in bad:
            self._loaded -= points_of({name: piece})
            self._give_up(exc, {name: piece})

    def _spool_failed(self, exc: OSError) -> None:
        """Note a failed spool write; the next try waits for a growing backoff."""
        loop = self._loop
        assert loop is not None
        if self._spool_error is None:
            log.error("the spool cannot be written (%s); points stay in memory, adds wait "
                      "when the buffer is full, retrying", exc)
        self._spool_error = exc
        self._spool_failures += 1
        self._count.last_error = repr(exc)
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
        batch = self._new_batch(data, record.points, record.end)
        batch.record = record
        self._position = record.end
        self._spooled += record.points

    # ---------------------------------------------------------------- delivery

    async def _run(self) -> None:
        """The background task: start deliveries, cut batches when due, back off.

        A failure of one step (a spool that cannot be written, a bug) is logged and
        retried later; only a closed client stops it.
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
                    self._count.last_error = repr(exc)
                    self._attempts += 1
                    self._retry_at = now + min(self.retry_max, self.retry_initial * 2 ** min(
                        self._attempts - 1, 30))
                if self._closing and not self._buffer:
                    if not self._queue:
                        return
                    if self._spool is not None and self._outage and not self._inflight:
                        log.warning("closing during an outage: %d point(s) stay spooled",
                                    self._spooled)
                        return
                if self._closing and self._spool_error is not None and not self._inflight:
                    return  # what cannot be spooled is reported by close()
                deadlines = []
                if self._buffer:
                    deadlines.append(max(self._buffer.oldest + self.max_delay,
                                         self._spool_retry_at))
                if self._todo:
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
            self._count.last_error = repr(exc)
        finally:
            self._notify()

    async def _step(self, now: float) -> bool:
        """Do the next due piece of work; False when nothing is due (wait for a wakeup)."""
        started = self._start_deliveries(now)
        buffer = self._buffer
        if not buffer or now < self._spool_retry_at:
            return started
        if self._closing or now - buffer.oldest >= self.max_delay:
            await self._cut(None)
        elif buffer.points >= self.max_batch_points:
            await self._cut(buffer.points - buffer.points % self.max_batch_points)
        else:
            return started
        return self._spool_error is None or started

    def _start_deliveries(self, now: float) -> bool:
        """Start delivery tasks for queued batches, up to ``max_in_flight`` (one at a time
        after a failure, until a delivery succeeds again)."""
        if not self._todo or now < self._retry_at:
            return False
        limit = 1 if self._attempts else self.max_in_flight
        loop = self._loop
        assert loop is not None
        started = False
        while self._todo and len(self._inflight) < limit:
            batch = self._todo.popleft()
            self._inflight.add(batch)
            batch.task = loop.create_task(self._deliver(batch))
            started = True
        return started

    def _remaining(self, batch: Batch) -> dict[str, Any]:
        data = batch.data
        if data is None:
            data = self._spool.read(batch.record) if self._spool and batch.record else {}
        return {s: p for s, p in data.items() if s not in batch.done and s not in batch.rejected}

    async def _deliver(self, batch: Batch) -> None:
        """One delivery attempt of a batch (a task); on success it is marked delivered."""
        try:
            if batch.data is None:
                assert self._spool is not None
                assert batch.record is not None
                if self._buffer.points + self._loaded + batch.points > self.max_buffer_points:
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
            try:
                await self._attempt(batch)
            except ClientClosedError as exc:
                self._count.last_error = repr(exc)
                self._fatal = exc
                self._requeue(batch)
                self._release(batch)
            except (InsertOutcomeUnknown, TsTimeoutError, ProtocolError) as exc:
                # unknown outcome (an undecodable answer too): check before sending again
                self._failed_attempt(batch, exc)
                self._count.ambiguous += 1
                if self.ambiguous == "check":
                    batch.check = True
            except (TsConnectorError, OSError) as exc:
                self._failed_attempt(batch, exc)
            except asyncio.CancelledError:
                if batch.record is not None and self.ambiguous == "check":
                    batch.check = True  # a cancelled insert may have been stored
                self._requeue(batch)
                self._release(batch)
                raise
            except Exception as exc:  # a bug must not stop the writer; the batch stays queued
                log.exception("unexpected error while delivering a batch")
                self._failed_attempt(batch, exc)
            else:
                self._delivered(batch)
        finally:
            self._inflight.discard(batch)
            batch.task = None
            if self._fatal is None and not self._stopped and self._loop is not None:
                # the next batch goes out now, even while the background task is busy
                # spooling (so the server never waits for a spool write)
                self._start_deliveries(self._loop.time())
            self._wake()

    async def _attempt(self, batch: Batch) -> None:
        """Send what is left of ``batch`` (after a read-back when its outcome is unknown)."""
        payload = self._remaining(batch)
        if batch.check and payload:
            payload, present = await self._readback.missing(payload)
            if present:
                self._count.present += present
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
            sent = points_of(part)
            self._count.sent += sent
            if batch.replay:
                self._count.replayed += sent
            batch.done.update(part)

    def _requeue(self, batch: Batch) -> None:
        """Put a batch back among those waiting for delivery, in cut order."""
        todo = self._todo
        numbers = [b.number for b in todo]
        todo.insert(bisect.bisect_left(numbers, batch.number), batch)

    def _failed_attempt(self, batch: Batch, exc: BaseException) -> None:
        loop = self._loop
        assert loop is not None
        self._count.last_error = repr(exc)
        self._count.retries += 1
        self._attempts += 1
        delay = min(self.retry_max, self.retry_initial * 2 ** min(self._attempts - 1, 30))
        self._retry_at = loop.time() + delay * random.uniform(0.5, 1.0)
        log.debug("batch delivery failed (%r); retrying in <= %.2f s", exc, delay)
        self._requeue(batch)
        self._release(batch)
        self._notify()  # an outage lets waiting adds spill to the spool

    @property
    def _evictable(self) -> bool:
        return any(b.data is not None and b not in self._inflight for b in self._queue)

    def _evict(self) -> None:
        """Drop the in-memory copy of spooled batches (not those being sent)."""
        for batch in self._queue:
            if batch not in self._inflight:
                self._release(batch)

    def _release(self, batch: Batch) -> None:
        """Drop a spooled batch's points from memory between attempts (reloaded when due)."""
        if batch.record is not None and batch.data is not None:
            batch.data = None
            self._loaded -= batch.points

    def _delivered(self, batch: Batch) -> None:
        """A batch was delivered: free its points and acknowledge what is done."""
        batch.delivered = True
        if batch.data is not None:
            self._loaded -= batch.points
            batch.data = None
        self._attempts = 0
        self._retry_at = 0.0
        self._ack_front()

    def _ack_front(self) -> None:
        """Acknowledge every done batch at the queue front, in cut order (so the spool
        always holds a tail of the batches)."""
        queue = self._queue
        while queue and queue[0].delivered:
            done = queue.popleft()
            if done.record is not None and self._spool is not None:
                self._spool.ack(done.record)
                self._spooled -= done.points
            if not done.lost:
                self._count.batches_sent += 1
        self._notify()

    def _report_damage(self) -> None:
        """Count and report what a previous process's spool lost to damaged bytes."""
        assert self._spool is not None
        for item in self._spool.damage:
            if item.torn:
                continue  # an interrupted write: nothing acknowledged was in it
            self._count.lost += item.lost_points or 0
            exc = damage_error(item)
            self._count.last_error = repr(exc)
            self._report(exc, {})

    def _lost_from_spool(self, batch: Batch, exc: BaseException) -> None:
        """A spooled batch can no longer be read: count it lost, report it, drop it."""
        assert batch.record is not None
        self._count.lost += batch.points
        self._count.last_error = repr(exc)
        log.error("spooled batch %d (%d point(s)) is unreadable and lost: %s",
                  batch.record.seq, batch.points, exc)
        batch.delivered = batch.lost = True  # done with: acknowledged in order
        self._report(exc, {})
        self._ack_front()

    def _report(self, exc: BaseException, points: dict[str, list[Any]]) -> None:
        if self.on_error is not None:
            try:
                self.on_error(exc, points)
            except Exception:
                log.exception("the writer's on_error callback failed")

    def _give_up(self, exc: BaseException, data: Mapping[str, Any]) -> None:
        n = points_of(data)
        if not n:
            return
        self._count.failed += n
        self._count.last_error = repr(exc)
        log.error("writer gives up %d point(s): %r", n, exc)
        self._report(exc, {s: list(pairs(p)) for s, p in data.items()})

    # ---------------------------------------------------------------- read-back

    async def _missing(self, data: Mapping[str, Any]) -> tuple[dict[str, list[Any]], int]:
        """``(points not stored, points found stored)`` for ``data`` (see :mod:`.readback`)."""
        return await self._readback.missing(data)
