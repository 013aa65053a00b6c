"""``Subscription``: competing workers that handle an aggregated stream, partition by partition.

Guarantees:

- **One worker per partition.** A worker takes a partition's lease (``sub:<id>``,
  partition) before reading it and renews it while it works (a heartbeat every third of
  ``lease_seconds``); a worker that dies loses its partitions when its leases expire, and
  any other worker takes them over. Within a partition messages are handled in position
  order.
- **Exactly once, with the handler's own writes.** ``message.session`` is the catalog
  session whose transaction also moves the stored position (a compare-and-swap from the
  position the batch was read at, plus a check that the lease is still ours). What the
  handler writes through it commits together with the acknowledgement or not at all, so
  even a worker killed mid-batch, or one that lost its lease while stalled, can neither
  lose nor repeat those writes. Effects outside the catalog are at least once.
- **Positions never move backwards** (only :meth:`Subscription.seek` / ``reset`` move
  them at will). ``SINGLE`` stores the position after every message, ``BATCHED`` once
  per batch: messages handled before a failure are acknowledged, the failing one is not.
- **Retries, then dead letters.** A failing message is retried ``max_attempts`` times in
  all, with exponential back-off (``backoff`` doubling up to ``max_backoff``), each
  attempt rolled back on failure. Then it goes to ``tsconnector_agg_dead_letters`` with
  the error and the partition moves on; with ``dead_letter=False`` the partition stops
  there (its position stays before the message) and is tried again on the next pass.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any

from . import leases
from .interfaces import (
    AckStrategy,
    Handler,
    PartitionLag,
    StartAtBeginning,
    StartAtNextMessage,
    StartAtPointInTime,
    StartPoint,
    StreamMessage,
    SubscriptionMessage,
    SubscriptionStats,
)
from .wakeup import Wakeup

if TYPE_CHECKING:
    from ..catalog import Database, Session
    from .stream import AggregatedStream

log = logging.getLogger("tsconnector.aggregate")


#: Store ``$3`` as the last handled position if it is still -1 (no row also means -1).
_CAS_FIRST = (
    "INSERT INTO tsconnector_agg_positions (subscription_id, partition, position) "
    "VALUES ($1, $2, $3) ON CONFLICT (subscription_id, partition) "
    "DO UPDATE SET position = excluded.position "
    "WHERE tsconnector_agg_positions.position = -1 RETURNING position"
)
#: Store ``$3`` as the last handled position if it is still ``$4``.
_CAS = (
    "UPDATE tsconnector_agg_positions SET position = $3 "
    "WHERE subscription_id = $1 AND partition = $2 AND position = $4 RETURNING position"
)


class _Stop(Exception):
    """The partition cannot go on now (lease lost, or a failure without dead letters)."""


class Subscription:
    """A named consumer of an :class:`~.stream.AggregatedStream` (see the module docstring).

    Made by :meth:`AggregatedStream.subscription`. ``handler(message)`` may be a plain or
    an async function and gets a :class:`~.interfaces.SubscriptionMessage`.
    ``start_point`` applies when the subscription is first created (``None``: from the
    beginning). ``project=True`` lets :meth:`run_once` bring the stream up to date first,
    so no separate projector process is needed. ``poll_interval`` is how often
    :meth:`run` looks for work without a notification (0.1 s on SQLite, 5 s on
    PostgreSQL, where LISTEN/NOTIFY wakes it).
    """

    def __init__(
        self,
        stream: AggregatedStream,
        name: str,
        handler: Handler,
        *,
        batch_size: int = 10,
        start_point: StartPoint | None = None,
        ack_strategy: AckStrategy = AckStrategy.SINGLE,
        max_attempts: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        dead_letter: bool = True,
        lease_seconds: float = 30.0,
        poll_interval: float | None = None,
        project: bool = True,
        worker_id: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid subscription name {name!r}")
        if not callable(handler):
            raise TypeError("handler must be callable")
        if batch_size < 1 or max_attempts < 1 or lease_seconds <= 0:
            raise ValueError("batch_size, max_attempts and lease_seconds must be positive")
        if not isinstance(ack_strategy, AckStrategy):
            raise TypeError("ack_strategy must be AckStrategy.SINGLE or AckStrategy.BATCHED")
        self.stream = stream
        self.name = name
        self.handler = handler
        self.batch_size = batch_size
        self.start_point: StartPoint = start_point or StartAtBeginning()
        self.ack_strategy = ack_strategy
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.dead_letter = dead_letter
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.project = project
        #: Owner name of this worker's partition leases.
        self.worker_id = worker_id or uuid.uuid4().hex
        self._id: int | None = None
        self._stopping = False
        self._wakeup: Wakeup | None = None
        self._stats = SubscriptionStats()
        self._pass_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"Subscription({self.name!r}, stream={self.stream.name!r})"

    @property
    def _db(self) -> Database:
        return self.stream.store.catalog

    @property
    def subscription_id(self) -> int:
        if self._id is None:
            raise RuntimeError("the subscription is not open: await sub.open() first")
        return self._id

    @property
    def _scope(self) -> str:
        return f"sub:{self.subscription_id}"

    # ------------------------------------------------------------------ state

    async def open(self) -> Subscription:
        """Create the subscription at its start point if it does not exist (idempotent)."""
        if self._id is not None:
            return self
        await self.stream.open()
        stream_id = self.stream.stream_id
        async with self._db.session() as s:
            new_id = await s.fetchval(
                "INSERT INTO tsconnector_agg_subscriptions (stream_id, name) VALUES ($1, $2) "
                "ON CONFLICT (stream_id, name) DO NOTHING RETURNING id",
                stream_id,
                self.name,
            )
            if new_id is not None:
                await self._apply_start_point(s, int(new_id), self.start_point)
            else:
                new_id = await s.fetchval(
                    "SELECT id FROM tsconnector_agg_subscriptions "
                    "WHERE stream_id = $1 AND name = $2",
                    stream_id,
                    self.name,
                )
            await s.commit()
        self._id = int(new_id)
        return self

    async def _apply_start_point(self, s: Session, sub_id: int, start: StartPoint) -> None:
        """Set every partition's last handled position from ``start``."""
        await s.execute("DELETE FROM tsconnector_agg_positions WHERE subscription_id = $1", sub_id)
        if isinstance(start, StartAtBeginning):
            return
        stream_id = self.stream.stream_id
        if isinstance(start, StartAtNextMessage):
            await s.execute(
                "INSERT INTO tsconnector_agg_positions (subscription_id, partition, position) "
                "SELECT $1, partition, next_position - 1 FROM tsconnector_agg_partitions "
                "WHERE stream_id = $2",
                sub_id,
                stream_id,
            )
            return
        if isinstance(start, StartAtPointInTime):
            at = self.stream.store.to_db_time(start.time)
            await s.execute(
                "INSERT INTO tsconnector_agg_positions (subscription_id, partition, position) "
                "SELECT $1, p.partition, COALESCE((SELECT min(e.position) "
                "FROM tsconnector_agg_entries e WHERE e.stream_id = p.stream_id "
                "AND e.partition = p.partition AND e.occurred_at >= $3), p.next_position) - 1 "
                "FROM tsconnector_agg_partitions p WHERE p.stream_id = $2",
                sub_id,
                stream_id,
                at,
            )
            return
        raise TypeError(f"unknown start point {start!r}")

    async def positions(self) -> dict[int, int]:
        """``partition -> last handled position`` (-1: none yet) of every partition."""
        await self.open()
        async with self._db.session(readonly=True) as s:
            rows = await s.fetch(
                "SELECT p.partition, COALESCE(sp.position, -1) AS position "
                "FROM tsconnector_agg_partitions p LEFT JOIN tsconnector_agg_positions sp "
                "ON sp.subscription_id = $2 AND sp.partition = p.partition "
                "WHERE p.stream_id = $1",
                self.stream.stream_id,
                self.subscription_id,
            )
        return {int(r["partition"]): int(r["position"]) for r in rows}

    async def seek(self, partition: int, position: int) -> None:
        """Make ``position`` the next message of ``partition`` to handle (forwards or back)."""
        await self.open()
        async with self._db.session() as s:
            await s.execute(
                "INSERT INTO tsconnector_agg_positions (subscription_id, partition, position) "
                "VALUES ($1, $2, $3) ON CONFLICT (subscription_id, partition) "
                "DO UPDATE SET position = excluded.position",
                self.subscription_id,
                partition,
                position - 1,
            )
            await s.commit()

    async def reset(self, start_point: StartPoint | None = None) -> None:
        """Move every partition to ``start_point`` (default: the subscription's own)."""
        await self.open()
        async with self._db.session() as s:
            await self._apply_start_point(s, self.subscription_id, start_point or self.start_point)
            await s.commit()

    async def stats(self) -> SubscriptionStats:
        """Counters of this worker, and every partition's position, last position and lag."""
        await self.open()
        async with self._db.session(readonly=True) as s:
            rows = await s.fetch(
                "SELECT p.partition, p.next_position - 1 AS max_position, "
                "COALESCE(sp.position, -1) AS position "
                "FROM tsconnector_agg_partitions p LEFT JOIN tsconnector_agg_positions sp "
                "ON sp.subscription_id = $2 AND sp.partition = p.partition "
                "WHERE p.stream_id = $1",
                self.stream.stream_id,
                self.subscription_id,
            )
        self._stats.partitions = {
            int(r["partition"]): PartitionLag(
                int(r["partition"]), int(r["position"]), int(r["max_position"])
            )
            for r in rows
        }
        return self._stats

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Messages given up on: partition, position, message_id, attempts, error."""
        await self.open()
        async with self._db.session(readonly=True) as s:
            return await s.fetch(
                "SELECT id, partition, position, message_id, attempts, error, created_at "
                "FROM tsconnector_agg_dead_letters WHERE subscription_id = $1 "
                "ORDER BY partition, position",
                self.subscription_id,
            )

    # ------------------------------------------------------------------ working

    async def run_once(self) -> int:
        """One pass over every partition with work that no other worker holds.

        Returns how many messages were handled (dead letters included). Calls on one
        object run one after another (its leases are one owner's).
        """
        if self._pass_lock is None:
            self._pass_lock = asyncio.Lock()
        async with self._pass_lock:
            return await self._run_once()

    async def _run_once(self) -> int:
        await self.open()
        if self.project:
            await self.stream.projector.update_full()
        async with self._db.session(readonly=True) as s:
            rows = await s.fetch(
                "SELECT p.partition FROM tsconnector_agg_partitions p "
                "LEFT JOIN tsconnector_agg_positions sp "
                "ON sp.subscription_id = $2 AND sp.partition = p.partition "
                "WHERE p.stream_id = $1 AND p.next_position - 1 > COALESCE(sp.position, -1)",
                self.stream.stream_id,
                self.subscription_id,
            )
        work = [int(r["partition"]) for r in rows]
        random.shuffle(work)  # competing workers start on different partitions
        handled = 0
        for partition in work:
            if self._stopping:
                break
            handled += await self._drain(partition)
        return handled

    async def _drain(self, partition: int) -> int:
        """Handle ``partition`` up to its end while we hold its lease."""
        key = str(partition)
        async with self._db.session() as s:
            await leases.relaxed(s)
            got = await leases.take(s, self._scope, key, self.worker_id, self.lease_seconds)
            await s.commit()
        if not got:
            self._stats.lease_conflicts += 1
            return 0
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(key))
        handled = 0
        try:
            while not self._stopping:
                async with self._db.session(readonly=True) as s:
                    last = await s.fetchval(
                        "SELECT position FROM tsconnector_agg_positions "
                        "WHERE subscription_id = $1 AND partition = $2",
                        self.subscription_id,
                        partition,
                    )
                    last = -1 if last is None else int(last)
                    batch = await self.stream.slice_in(s, partition, last + 1, self.batch_size)
                if not batch:
                    break
                if self.ack_strategy is AckStrategy.BATCHED:
                    done, why = await self._handle_batched(partition, last, batch)
                else:
                    done, why = await self._handle_single(partition, last, batch)
                handled += done
                if why is not None:
                    log.info("subscription %r, partition %d stops: %s", self.name, partition, why)
                    break
                if len(batch) < self.batch_size:
                    break
        finally:
            heartbeat.cancel()
            try:
                await heartbeat
            except asyncio.CancelledError:
                pass
            async with self._db.session() as s:
                await leases.relaxed(s)
                await leases.release(s, self._scope, [key], self.worker_id)
                await s.commit()
        return handled

    async def _heartbeat(self, key: str) -> None:
        """Renew the partition's lease every third of its duration."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                async with self._db.session() as s:
                    await leases.relaxed(s)
                    await leases.take(s, self._scope, key, self.worker_id, self.lease_seconds)
                    await s.commit()
            except Exception as exc:  # the ack checks the lease anyway
                log.warning("could not renew the lease of partition %s: %s", key, exc)

    async def _call(self, message: SubscriptionMessage) -> None:
        result = self.handler(message)
        if inspect.isawaitable(result):
            await result

    async def _attempt(self, s: Session, message: SubscriptionMessage) -> BaseException | None:
        """Run the handler once; on failure undo what it wrote and return the error."""
        try:
            if s.in_transaction:
                async with s.savepoint():
                    await self._call(message)
            else:
                try:
                    await self._call(message)
                except BaseException:
                    if s.in_transaction:
                        await s.rollback()
                    raise
        except Exception as exc:
            self._stats.failed_attempts += 1
            log.warning(
                "subscription %r: handler failed on partition %d position %d (attempt %d): %r",
                self.name,
                message.partition,
                message.position,
                message.attempt,
                exc,
            )
            return exc
        return None

    async def _handle(self, s: Session, partition: int, item: StreamMessage) -> bool:
        """Handle one message with retries in ``s``; False when the partition must stop."""
        message = SubscriptionMessage(partition, item.position, item.stored_message, s)
        for attempt in range(1, self.max_attempts + 1):
            message.attempt = attempt
            error = await self._attempt(s, message)
            if error is None:
                return True
            if attempt < self.max_attempts:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
        if not self.dead_letter:
            return False
        await s.execute(
            "INSERT INTO tsconnector_agg_dead_letters (subscription_id, partition, position, "
            "message_id, attempts, error, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self.subscription_id,
            partition,
            item.position,
            item.message_id,
            self.max_attempts,
            "".join(traceback.format_exception_only(type(error), error)).strip(),
            time.time_ns() // 1000,
        )
        self._stats.dead_lettered += 1
        return True

    async def _ack(self, s: Session, partition: int, prev: int, new: int) -> None:
        """Move the stored position ``prev -> new`` in ``s`` if we still own the partition."""
        key = str(partition)
        if not await leases.take(s, self._scope, key, self.worker_id, self.lease_seconds):
            raise _Stop("lost the partition's lease to another worker")
        if prev == -1:
            moved = await s.fetchval(_CAS_FIRST, self.subscription_id, partition, new)
        else:
            moved = await s.fetchval(_CAS, self.subscription_id, partition, new, prev)
        if moved is None:
            raise _Stop("the stored position changed under us (another worker, or seek)")

    async def _handle_single(
        self, partition: int, last: int, batch: list[StreamMessage]
    ) -> tuple[int, str | None]:
        """One transaction per message; ``(handled, why it stopped early or None)``."""
        handled = 0
        for item in batch:
            async with self._db.session() as s:
                if not await self._handle(s, partition, item):
                    return handled, f"position {item.position} failed and dead_letter is off"
                try:
                    await self._ack(s, partition, last, item.position)
                except _Stop as stop:
                    await s.rollback()
                    return handled, str(stop)
                await s.commit()
            last = item.position
            handled += 1
            self._stats.handled += 1
        return handled, None

    async def _handle_batched(
        self, partition: int, last: int, batch: list[StreamMessage]
    ) -> tuple[int, str | None]:
        """One transaction for the batch; ``(handled, why it stopped early or None)``."""
        handled = 0
        why: str | None = None
        async with self._db.session() as s:
            done = last
            for item in batch:
                if not await self._handle(s, partition, item):
                    why = f"position {item.position} failed and dead_letter is off"
                    break
                done = item.position
                handled += 1
            if done > last:
                try:
                    await self._ack(s, partition, last, done)
                except _Stop as stop:
                    await s.rollback()
                    return 0, str(stop)
                await s.commit()
        self._stats.handled += handled
        return handled, why

    async def run(self) -> None:
        """Handle messages until :meth:`stop` or cancellation, waking on new data."""
        await self.open()
        self._stopping = False
        interval = self.poll_interval
        if interval is None:
            interval = 5.0 if self._db.supports_notify else 0.1
        channels = [self.stream.channel]
        if self.project:
            channels.append(self.stream.store.channel)
        wakeup = Wakeup(self._db, channels, interval)
        self._wakeup = wakeup
        await wakeup.start()
        try:
            while not self._stopping:
                if await self.run_once():
                    continue
                await wakeup.wait()
        finally:
            self._wakeup = None
            await wakeup.close()

    def stop(self) -> None:
        """Make :meth:`run` return once the current message or batch is done."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.poke()
