"""``StreamProjector``: gives each new message of the store its partition and position.

Why it never skips a message (no lookback window to tune):

1. Global positions are handed out by raising the store's ``head`` counter inside the
   transaction that adds the messages (:mod:`.store`). The counter row stays locked
   until that transaction ends, so the next writer gets its positions only after the
   previous one committed or rolled back (a rollback returns its positions). Hence the
   committed global positions are always exactly ``1..head``, and a position is never
   committed after a higher one.
2. The projector reads ``head`` (a committed value, never waiting for a writer), then
   the messages in ``(projected, head]``. By 1, all of them are committed and visible,
   and none can appear there later: a transaction still open holds positions above
   ``head`` only. It stores ``projected = head`` (or the last message of a full batch).
3. A message committed late, however long its transaction stayed open, has a position
   above every ``head`` read while it was open, so a later run reads it.

Only one projector writes a stream at a time: in the same transaction as its writes it
holds a PostgreSQL advisory transaction lock (``pg_try_advisory_xact_lock``; a projector
that does not get it leaves the work to the holder), or, on SQLite, a lease row with an
expiry (SQLite's single write lock already serialises the writes; the lease keeps two
projectors from taking turns batch by batch). It re-reads ``projected`` under the lock,
so any number of processes may run projectors on the same stream: each message gets
exactly one position.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..catalog.postgresql import advisory_key
from . import leases
from .interfaces import MessagePartitioner, ProjectionResult
from .store import MESSAGE_COLUMNS, stored_message
from .wakeup import Wakeup, notify, wake_local

if TYPE_CHECKING:
    from ..catalog import Session
    from .stream import AggregatedStream

log = logging.getLogger("tsconnector.aggregate")

_BUSY = -1


class StreamProjector:
    """Projects the store's messages into an :class:`~.stream.AggregatedStream`."""

    def __init__(
        self,
        stream: AggregatedStream,
        partitioner: MessagePartitioner,
        stream_wildcards: Sequence[str],
        *,
        batch_size: int = 100,
        lease_seconds: float = 10.0,
        poll_interval: float | None = None,
    ) -> None:
        self.stream = stream
        self.partitioner = partitioner
        self.stream_wildcards = list(stream_wildcards)
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.owner = uuid.uuid4().hex
        self._stopping = False
        self._wakeup: Wakeup | None = None
        self._lease_until = 0.0  # SQLite: our lease is fresh until then (monotonic)
        self._next: dict[int, int] | None = None  # next position per partition...
        self._next_at = -1  # ...valid while ``projected`` is still this

    @property
    def _db(self) -> Any:
        return self.stream.store.catalog

    def _lock_key(self) -> int:
        schema = getattr(self._db, "schema", None) or ""
        return advisory_key("tsconnector", "agg-projector", schema, str(self.stream.stream_id))

    # ------------------------------------------------------------------ one run

    async def pending(self) -> int:
        """How many global positions the stream is behind the store (0 = up to date)."""
        await self.stream.open()
        async with self._db.session(readonly=True) as s:
            row = await s.fetchrow(
                "SELECT st.head, ag.projected FROM tsconnector_agg_stores st "
                "JOIN tsconnector_agg_streams ag ON ag.store_id = st.id WHERE ag.id = $1",
                self.stream.stream_id,
            )
        assert row is not None
        return max(0, int(row["head"]) - int(row["projected"]))

    async def update_full(self, budget: float | None = None) -> ProjectionResult:
        """Project everything committed so far (or until ``budget`` seconds are used).

        Returns how many messages were projected and whether more are waiting. When
        another process is projecting this stream it returns at once (that process
        does the work).
        """
        if await self.pending() == 0:
            return ProjectionResult(0, False)
        deadline = None if budget is None else time.monotonic() + budget
        total = 0
        more = True
        self._lease_until = 0.0
        try:
            while more:
                n, more = await self._project_batch()
                if n == _BUSY:
                    return ProjectionResult(total, True)
                total += n
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            if self._lease_until:
                async with self._db.session() as s:
                    await leases.relaxed(s)
                    await leases.release(s, "projector", [str(self.stream.stream_id)], self.owner)
                    await s.commit()
                self._lease_until = 0.0
        return ProjectionResult(total, more)

    async def _lock(self, s: Session) -> bool:
        """Become the stream's only projector for this transaction (False: busy).

        On PostgreSQL it also lets the transaction commit without waiting for the disk:
        projection is deterministic (the same messages in the same order through the
        same partitioner), so batches lost in a database crash are projected again
        with exactly the same partitions and positions.
        """
        if s.dialect == "postgresql":
            got = await s.fetchval("SELECT pg_try_advisory_xact_lock($1)", self._lock_key())
            if got:
                await s.execute("SET LOCAL synchronous_commit = off")
            return bool(got)
        now = time.monotonic()
        if now < self._lease_until:  # renewed a third of a lease ago at most
            return True
        if await leases.take(
            s, "projector", str(self.stream.stream_id), self.owner, self.lease_seconds
        ):
            self._lease_until = now + self.lease_seconds / 3
            return True
        return False

    async def _project_batch(self) -> tuple[int, bool]:
        """One transaction: up to ``batch_size`` messages; ``(n, more)``, n = -1 if busy."""
        stream = self.stream
        store_id = stream.store.store_id
        async with self._db.session() as s:
            if not await self._lock(s):
                return _BUSY, True
            row = await s.fetchrow(
                "SELECT ag.projected, st.head FROM tsconnector_agg_streams ag "
                "JOIN tsconnector_agg_stores st ON st.id = ag.store_id WHERE ag.id = $1",
                stream.stream_id,
            )
            assert row is not None
            projected, head = int(row["projected"]), int(row["head"])
            if projected >= head:
                return 0, False
            like = " OR ".join(
                f"stream LIKE ${i} ESCAPE '\\'" for i in range(5, 5 + len(self.stream_wildcards))
            )
            rows = await s.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM tsconnector_agg_messages WHERE store_id = $1 "
                f"AND global_position > $2 AND global_position <= $3 AND ({like}) "
                "ORDER BY global_position LIMIT $4",
                store_id,
                projected,
                head,
                self.batch_size,
                *self.stream_wildcards,
            )
            full = len(rows) == self.batch_size
            new_projected = int(rows[-1]["global_position"]) if full else head
            # SQLite's LIKE ignores ASCII case: keep exactly what PostgreSQL would.
            messages = [stored_message(r) for r in rows if stream.matches(str(r["stream"]))]
            try:
                if messages:
                    await self._write_entries(s, messages, projected)
                await s.execute(
                    "UPDATE tsconnector_agg_streams SET projected = $1 WHERE id = $2",
                    new_projected,
                    stream.stream_id,
                )
                if messages:
                    await notify(s, stream.channel)
                await s.commit()
            except BaseException:
                self._next = None  # positions of a batch that was not committed
                raise
            self._next_at = new_projected
        if messages:
            wake_local(self._db, stream.channel)
        return len(messages), new_projected < head

    async def _next_positions(
        self, s: Session, wanted: list[int], projected: int
    ) -> dict[int, int]:
        """The next free position of each partition in ``wanted``.

        Kept between this projector's own batches: ``projected`` only ever changes
        together with new entries (or a truncate), so when it is still the value this
        projector committed last, nobody else has written entries since.
        """
        cached = self._next if self._next_at == projected else None
        if cached is not None and all(p in cached for p in wanted):
            return cached
        marks = ", ".join(f"${i}" for i in range(2, 2 + len(wanted)))
        rows = await s.fetch(
            "SELECT partition, next_position FROM tsconnector_agg_partitions "
            f"WHERE stream_id = $1 AND partition IN ({marks})",
            self.stream.stream_id,
            *wanted,
        )
        found = dict(cached) if cached is not None else {}
        found.update({p: 0 for p in wanted if p not in found})
        found.update({int(r["partition"]): int(r["next_position"]) for r in rows})
        return found

    async def _write_entries(self, s: Session, messages: list[Any], projected: int) -> None:
        stream_id = self.stream.stream_id
        parts = [int(self.partitioner.get_partition(m)) for m in messages]
        for p in parts:
            if p < 0:
                raise ValueError(f"partitioner {self.partitioner!r} returned {p} (must be >= 0)")
        nxt = dict(await self._next_positions(s, sorted(set(parts)), projected))
        columns: tuple[list[int], ...] = ([], [], [], [])
        for message, p in zip(messages, parts):
            for column, value in zip(
                columns, (p, nxt[p], message.global_position, message.occurred_at)
            ):
                column.append(value)
            nxt[p] += 1
        touched = sorted(set(parts))
        if s.dialect == "postgresql":  # one statement each, whatever the batch size
            await s.execute(
                "INSERT INTO tsconnector_agg_entries (stream_id, partition, position, "
                "global_position, occurred_at) SELECT $1, * FROM "
                "unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])",
                stream_id,
                *columns,
            )
            await s.execute(
                "INSERT INTO tsconnector_agg_partitions (stream_id, partition, next_position) "
                "SELECT $1, * FROM unnest($2::bigint[], $3::bigint[]) "
                "ON CONFLICT (stream_id, partition) "
                "DO UPDATE SET next_position = excluded.next_position",
                stream_id,
                touched,
                [nxt[p] for p in touched],
            )
        else:
            await s.executemany(
                "INSERT INTO tsconnector_agg_entries (stream_id, partition, position, "
                "global_position, occurred_at) VALUES ($1, $2, $3, $4, $5)",
                [(stream_id, *row) for row in zip(*columns)],
            )
            await s.executemany(
                "INSERT INTO tsconnector_agg_partitions (stream_id, partition, next_position) "
                "VALUES ($1, $2, $3) ON CONFLICT (stream_id, partition) "
                "DO UPDATE SET next_position = excluded.next_position",
                [(stream_id, p, nxt[p]) for p in touched],
            )
        self._next = nxt

    # ------------------------------------------------------------------ running

    async def run(self, budget: float | None = None) -> None:
        """Project until :meth:`stop` (or cancellation), waking on new messages.

        PostgreSQL wakes it by LISTEN/NOTIFY; SQLite by polling every ``poll_interval``
        seconds (0.1 by default; PostgreSQL's fallback poll is 5 s) and at once for
        writers in the same process.
        """
        await self.stream.open()
        self._stopping = False
        interval = self.poll_interval
        if interval is None:
            interval = 5.0 if self._db.supports_notify else 0.1
        wakeup = Wakeup(self._db, [self.stream.store.channel], interval)
        self._wakeup = wakeup
        await wakeup.start()
        try:
            while not self._stopping:
                result = await self.update_full(budget)
                if result.more_messages_available and result.n_updated_messages:
                    await asyncio.sleep(0)  # let others run between budgets
                    continue
                await wakeup.wait()  # nothing new, or another projector is at work
        finally:
            self._wakeup = None
            await wakeup.close()

    def stop(self) -> None:
        """Make :meth:`run` return after the current batch."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.poke()
