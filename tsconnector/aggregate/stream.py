"""``AggregatedStream``: the messages of many series as one stream in partitions.

A partitioner puts each message of the store whose series matches one of the stream's
wildcards (SQL ``LIKE`` patterns, case-sensitive on both backends) into a partition;
positions in a partition are gapless from 0 and follow global (commit) order. The
entries are links to the store's messages (``tsconnector_agg_entries``), written by the
:class:`~.projector.StreamProjector`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .interfaces import (
    AckStrategy,
    Handler,
    MessagePartitioner,
    StartPoint,
    StreamMessage,
    StreamPartitionStatistic,
)
from .store import MESSAGE_COLUMNS, stored_message
from .wakeup import stream_channel

if TYPE_CHECKING:
    from ..catalog import Session
    from .projector import StreamProjector
    from .store import MessageStore
    from .subscription import Subscription

log = logging.getLogger("tsconnector.aggregate")


_ENTRY_MESSAGE = (
    "SELECT e.partition, e.position, "
    + ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
    + " FROM tsconnector_agg_entries e JOIN tsconnector_agg_messages m "
    "ON m.store_id = $1 AND m.global_position = e.global_position "
)


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching what SQL ``pattern LIKE ... ESCAPE '\\'`` matches, case-sensitively."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


class AggregatedStream:
    """Messages of the series matching ``stream_wildcards``, split by ``partitioner``.

    Made by :meth:`MessageStore.aggregated_stream`. ``projector`` fills it;
    :meth:`subscription` consumes it.
    """

    def __init__(
        self,
        name: str,
        store: MessageStore,
        partitioner: MessagePartitioner,
        stream_wildcards: Sequence[str],
        *,
        update_batch_size: int = 100,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid stream name {name!r}")
        if isinstance(stream_wildcards, str):
            raise TypeError("stream_wildcards must be a list of LIKE patterns, not a str")
        if not stream_wildcards:
            raise ValueError("stream_wildcards must hold at least one pattern")
        if update_batch_size < 1:
            raise ValueError("update_batch_size must be >= 1")
        if not callable(getattr(partitioner, "get_partition", None)):
            raise TypeError("partitioner must have get_partition(message) -> int")
        from .projector import StreamProjector

        self.name = name
        self.store = store
        self.partitioner = partitioner
        self.stream_wildcards = list(stream_wildcards)
        self.regexes = [like_to_regex(w) for w in self.stream_wildcards]
        self._id: int | None = None
        self.projector: StreamProjector = StreamProjector(
            self, partitioner, self.stream_wildcards, batch_size=update_batch_size
        )

    def __repr__(self) -> str:
        return f"AggregatedStream({self.name!r}, store={self.store.name!r})"

    # ------------------------------------------------------------------ identity

    async def open(self) -> AggregatedStream:
        """Create this stream's row (idempotent); returns self."""
        if self._id is not None:
            return self
        await self.store.open()
        wildcards = json.dumps(self.stream_wildcards)
        async with self.store.catalog.session() as s:
            await s.execute(
                "INSERT INTO tsconnector_agg_streams (store_id, name, wildcards) "
                "VALUES ($1, $2, $3) ON CONFLICT (store_id, name) DO NOTHING",
                self.store.store_id,
                self.name,
                wildcards,
            )
            row = await s.fetchrow(
                "SELECT id, wildcards FROM tsconnector_agg_streams "
                "WHERE store_id = $1 AND name = $2",
                self.store.store_id,
                self.name,
            )
            assert row is not None
            if row["wildcards"] != wildcards:
                log.warning(
                    "aggregated stream %r: wildcards changed from %s to %s; they apply to "
                    "messages projected from now on",
                    self.name,
                    row["wildcards"],
                    wildcards,
                )
                await s.execute(
                    "UPDATE tsconnector_agg_streams SET wildcards = $1 WHERE id = $2",
                    wildcards,
                    row["id"],
                )
            await s.commit()
        self._id = int(row["id"])
        return self

    @property
    def stream_id(self) -> int:
        if self._id is None:
            raise RuntimeError("the stream is not open: await stream.open() first")
        return self._id

    @property
    def channel(self) -> str:
        """Notification channel of new entries."""
        return stream_channel(self.stream_id)

    def matches(self, series: str) -> bool:
        """True when ``series`` belongs to this stream."""
        return any(r.fullmatch(series) for r in self.regexes)

    async def _readonly(self) -> Any:
        await self.open()
        return self.store.catalog.session(readonly=True)

    # ------------------------------------------------------------------ reading

    async def read(self, partition: int, *, page: int = 500) -> AsyncIterator[StreamMessage]:
        """Every message of ``partition`` in position order (read ``page`` at a time)."""
        start = 0
        while True:
            async with await self._readonly() as s:
                rows = await self.slice_in(s, partition, start, page)
            for row in rows:
                yield row
            if len(rows) < page:
                return
            start = rows[-1].position + 1

    async def read_slice(
        self, partition: int, start: int, count: int
    ) -> AsyncIterator[StreamMessage]:
        """Up to ``count`` messages of ``partition`` from position ``start`` on."""
        async with await self._readonly() as s:
            rows = await self.slice_in(s, partition, start, count)
        for row in rows:
            yield row

    async def slice_in(
        self, s: Session, partition: int, start: int, count: int
    ) -> list[StreamMessage]:
        """:meth:`read_slice` in an open session."""
        rows = await s.fetch(
            _ENTRY_MESSAGE + "WHERE e.stream_id = $2 AND e.partition = $3 AND e.position >= $4 "
            "ORDER BY e.position LIMIT $5",
            self.store.store_id,
            self.stream_id,
            partition,
            max(0, start),
            count,
        )
        return [_stream_message(r) for r in rows]

    async def projected_position(self) -> int:
        """The global position up to which the store has been projected."""
        async with await self._readonly() as s:
            value = await s.fetchval(
                "SELECT projected FROM tsconnector_agg_streams WHERE id = $1", self.stream_id
            )
        return int(value or 0)

    async def get_max_positions(self) -> dict[int, int]:
        """``partition -> last position`` of every partition with messages."""
        async with await self._readonly() as s:
            rows = await s.fetch(
                "SELECT partition, next_position FROM tsconnector_agg_partitions "
                "WHERE stream_id = $1",
                self.stream_id,
            )
        return {int(r["partition"]): int(r["next_position"]) - 1 for r in rows}

    async def time_to_positions(self, time: _dt.datetime | int) -> dict[int, int]:
        """``partition -> position`` of the first message whose time is ``>= time``.

        A message's time is its earliest point's timestamp; ``time`` is a ``datetime``
        (naive = UTC) or an int in database units. A partition with no such message
        maps to its last position + 1 (the next message to come).
        """
        at = self.store.to_db_time(time)
        async with await self._readonly() as s:
            rows = await s.fetch(
                "SELECT p.partition, COALESCE((SELECT min(e.position) "
                "FROM tsconnector_agg_entries e WHERE e.stream_id = p.stream_id "
                "AND e.partition = p.partition AND e.occurred_at >= $2), p.next_position) "
                "AS position FROM tsconnector_agg_partitions p WHERE p.stream_id = $1",
                self.stream_id,
                at,
            )
        return {int(r["partition"]): int(r["position"]) for r in rows}

    async def global_position_to_positions(self, global_position: int) -> dict[int, int]:
        """``partition -> last position`` holding a message at or before ``global_position``
        (-1 for a partition whose messages all come later)."""
        async with await self._readonly() as s:
            rows = await s.fetch(
                "SELECT p.partition, COALESCE((SELECT max(e.position) "
                "FROM tsconnector_agg_entries e WHERE e.stream_id = p.stream_id "
                "AND e.partition = p.partition AND e.global_position <= $2), -1) "
                "AS position FROM tsconnector_agg_partitions p WHERE p.stream_id = $1",
                self.stream_id,
                global_position,
            )
        return {int(r["partition"]): int(r["position"]) for r in rows}

    async def get_partition_statistics(
        self,
        position_limits: Mapping[int, int] | None = None,
        result_limit: int | None = None,
    ) -> list[StreamPartitionStatistic]:
        """The next message of every partition that has one.

        Without ``position_limits`` the next message is the partition's first; with it,
        the one after ``position_limits[partition]`` (a last handled position). Sorted by
        the next message's time; ``result_limit`` keeps the first ones.
        """
        limits = dict(position_limits or {})
        result: list[StreamPartitionStatistic] = []
        async with await self._readonly() as s:
            parts = await s.fetch(
                "SELECT partition, next_position FROM tsconnector_agg_partitions "
                "WHERE stream_id = $1 ORDER BY partition",
                self.stream_id,
            )
            for part in parts:
                partition = int(part["partition"])
                nxt = limits.get(partition, -1) + 1
                if nxt >= int(part["next_position"]):
                    continue
                row = await s.fetchrow(
                    "SELECT e.position, e.occurred_at, m.message_id "
                    "FROM tsconnector_agg_entries e JOIN tsconnector_agg_messages m "
                    "ON m.store_id = $1 AND m.global_position = e.global_position "
                    "WHERE e.stream_id = $2 AND e.partition = $3 AND e.position = $4",
                    self.store.store_id,
                    self.stream_id,
                    partition,
                    nxt,
                )
                if row is None:
                    continue
                result.append(
                    StreamPartitionStatistic(
                        partition_number=partition,
                        next_message_id=str(row["message_id"]),
                        next_message_position=int(row["position"]),
                        next_message_occurred_at=int(row["occurred_at"]),
                        max_position=int(part["next_position"]) - 1,
                    )
                )
        result.sort(key=lambda st: (st.next_message_occurred_at, st.partition_number))
        return result if result_limit is None else result[:result_limit]

    # ------------------------------------------------------------------ changing

    async def truncate(self) -> None:
        """Empty the stream: entries, partitions and its subscriptions' positions.

        The projector then projects the store again from its first message.
        """
        await self.open()
        async with self.store.catalog.session() as s:
            await reset_stream(s, self.stream_id)
            await s.commit()

    def subscription(
        self,
        name: str,
        handler: Handler,
        batch_size: int = 10,
        start_point: StartPoint | None = None,
        ack_strategy: AckStrategy = AckStrategy.SINGLE,
        **options: Any,
    ) -> Subscription:
        """A named subscription: ``handler(message)`` for each message, in partition order.

        See :class:`~.subscription.Subscription` for ``options`` (retries, leases...).
        """
        from .subscription import Subscription

        return Subscription(
            self,
            name,
            handler,
            batch_size=batch_size,
            start_point=start_point,
            ack_strategy=ack_strategy,
            **options,
        )


async def reset_stream(s: Session, stream_id: int) -> None:
    """Delete a stream's entries, partitions and subscription positions; rewind it."""
    await s.execute("DELETE FROM tsconnector_agg_entries WHERE stream_id = $1", stream_id)
    await s.execute("DELETE FROM tsconnector_agg_partitions WHERE stream_id = $1", stream_id)
    await s.execute(
        "DELETE FROM tsconnector_agg_positions WHERE subscription_id IN "
        "(SELECT id FROM tsconnector_agg_subscriptions WHERE stream_id = $1)",
        stream_id,
    )
    await s.execute("UPDATE tsconnector_agg_streams SET projected = 0 WHERE id = $1", stream_id)


def _stream_message(row: dict[str, Any]) -> StreamMessage:
    return StreamMessage(int(row["partition"]), int(row["position"]), stored_message(row))
