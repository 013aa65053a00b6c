"""``MessageStore``: point batches as messages in the catalog, with gapless global positions.

Every transaction that adds messages first raises the store's ``head`` counter
(``UPDATE ... SET head = head + n``). That row stays locked until the transaction ends,
so stores' writers commit one after another and global positions are handed out in
commit order: the committed positions are always exactly ``1..head``. A reader that
sees position ``p`` committed can rely on every position below ``p`` being committed
too; this is what makes the projector gap-free without a lookback window
(:mod:`.projector`). The price: a transaction that adds messages holds the store's
counter until it ends, so keep such transactions short.

Two ways in: the journal (:meth:`MessageStore.write`, :meth:`MessageStore.writer`; see
:mod:`.journal`) and the tee (:meth:`MessageStore.tee_receiver`; see :mod:`.tee`).
:meth:`MessageStore.append` adds messages without touching the server (an outbox inside
the caller's own transaction, tests, imports).
"""

from __future__ import annotations

import datetime as _dt
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..catalog import Database, Session
from ..catalog.names import check_component_name
from ..timeutil import to_db_time
from .codec import decode_points, encode_points
from .errors import MessageNotFound
from .interfaces import MessagePartitioner, MessagePosition, PointBatch, StoredMessage, as_batches
from .schema import migrate
from .wakeup import notify, store_channel, wake_local

if TYPE_CHECKING:
    from ..client import TsClient
    from .journal import RecoveryReport
    from .stream import AggregatedStream
    from .tee import TeeReceiver
    from .writer import JournalWriter

MESSAGE_COLUMNS = "global_position, message_id, stream, version, added_at, source, payload"


def now_us() -> int:
    """Microseconds since the epoch (``added_at``)."""
    return time.time_ns() // 1000


def stored_message(row: dict[str, Any]) -> StoredMessage:
    """A :class:`StoredMessage` from a row with :data:`MESSAGE_COLUMNS`."""
    return StoredMessage(
        message_id=str(row["message_id"]),
        stream=str(row["stream"]),
        version=int(row["version"]),
        global_position=int(row["global_position"]),
        added_at=_dt.datetime.fromtimestamp(int(row["added_at"]) / 1e6, _dt.timezone.utc),
        points=decode_points(str(row["stream"]), row["payload"]),
        source=str(row["source"]),
    )


class MessageStore:
    """A named message store in ``catalog``; ``client`` is the server its points go to.

    ``name``: 1..63 characters of a-z, 0-9, ``_``, ``.`` and ``-``.

    ``await store.open()`` (or ``async with store``) creates the catalog tables when
    needed; the other methods open it on first use. ``client`` may be None for a store
    that is only read. ``lease_seconds`` is how long a journal writer owns the series it
    writes (it must outlast ``insert_timeout``); after a crash, recovery takes a series
    over once its lease has expired.
    """

    def __init__(
        self,
        name: str,
        catalog: Database,
        client: TsClient | None = None,
        *,
        lease_seconds: float = 60.0,
        insert_timeout: float = 20.0,
    ) -> None:
        check_component_name(name)
        if insert_timeout <= 0 or lease_seconds <= 2 * insert_timeout:
            raise ValueError("lease_seconds must be more than twice insert_timeout (> 0)")
        self.name = name
        self.catalog = catalog
        self.client = client
        self.lease_seconds = lease_seconds
        self.insert_timeout = insert_timeout
        #: Owner name of this store object's leases.
        self.owner = f"{uuid.uuid4().hex}"
        self._id: int | None = None
        self._precision: int | None = None
        #: In-process locks of the series being written: name -> [lock, users].
        self._series_locks: dict[str, list[Any]] = {}
        #: Series whose insert is in doubt -> monotonic time its lease runs out.
        self._in_doubt: dict[str, float] = {}
        #: Test hook: called with ``"logged"`` and ``"inserted"`` by the journal.
        self._journal_hook: Any = None

    def __repr__(self) -> str:
        return f"MessageStore({self.name!r})"

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> MessageStore:
        """Create the tables and this store's row if needed (idempotent); returns self."""
        if self._id is not None:
            return self
        await self.catalog.open()
        await migrate(self.catalog)
        precision = await self.client.db_time_precision() if self.client is not None else None
        async with self.catalog.session() as s:
            await s.execute(
                "INSERT INTO tsconnector_agg_stores (name, time_precision) VALUES ($1, $2) "
                "ON CONFLICT (name) DO NOTHING",
                self.name,
                precision,
            )
            row = await s.fetchrow(
                "SELECT id, time_precision FROM tsconnector_agg_stores WHERE name = $1", self.name
            )
            assert row is not None
            stored = row["time_precision"]
            if stored is None and precision is not None:
                await s.execute(
                    "UPDATE tsconnector_agg_stores SET time_precision = $1 WHERE id = $2",
                    precision,
                    row["id"],
                )
                stored = precision
            elif precision is not None and stored != precision:
                raise ValueError(
                    f"store {self.name!r} holds points of precision {stored}, "
                    f"but the client's database has precision {precision}"
                )
            await s.commit()
        self._id = int(row["id"])
        self._precision = None if stored is None else int(stored)
        return self

    async def __aenter__(self) -> MessageStore:
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        return None

    @property
    def store_id(self) -> int:
        if self._id is None:
            raise RuntimeError("the store is not open: await store.open() first")
        return self._id

    @property
    def time_precision(self) -> int | None:
        """The database's time precision (0 s .. 3 ns), once known."""
        return self._precision

    def to_db_time(self, time: _dt.datetime | int) -> int:
        """``time`` in database units (an int is taken as such; datetimes round up)."""
        if isinstance(time, int) and not isinstance(time, bool):
            return time
        if self._precision is None:
            raise ValueError(
                "the store does not know the database's time precision (open it with a "
                "client once), so give times as int database units"
            )
        return to_db_time(time, self._precision, rounding="ceil")

    @property
    def channel(self) -> str:
        """Notification channel of new messages."""
        return store_channel(self.store_id)

    @asynccontextmanager
    async def _session(self, session: Session | None) -> AsyncIterator[tuple[Session, bool]]:
        """``(session, own)``: the given one, or a new one committed by the caller."""
        await self.open()
        if session is not None:
            yield session, False
            return
        async with self.catalog.session() as s:
            yield s, True

    # ------------------------------------------------------------------ writing

    async def append(
        self, data: Any, *, session: Session | None = None, source: str = "append"
    ) -> list[MessagePosition]:
        """Add messages without writing to the server; their positions, in order.

        ``data``: a :class:`PointBatch`, a list of them, or ``{series: points}``. With
        ``session`` the messages become visible when the caller commits (an outbox in the
        caller's own transaction); the store's counter stays locked until then.
        """
        batches = as_batches(data)
        async with self._session(session) as (s, own):
            positions = await self.append_in(s, [(str(uuid.uuid4()), b) for b in batches], source)
            if own:
                await s.commit()
                wake_local(self.catalog, self.channel)
        return positions

    async def append_in(
        self, session: Session, items: Sequence[tuple[str, PointBatch]], source: str
    ) -> list[MessagePosition]:
        """Insert ``(message_id, batch)`` messages in ``session`` (not committed here)."""
        if not items:
            return []
        for _, batch in items:
            if not len(batch):
                raise ValueError(f"empty batch for series {batch.series!r}")
        head = await session.fetchval(
            "UPDATE tsconnector_agg_stores SET head = head + $1 WHERE id = $2 RETURNING head",
            len(items),
            self.store_id,
        )
        position = int(head) - len(items)
        versions = await self._last_versions(session, {b.series for _, b in items})
        added = now_us()
        rows: list[tuple[Any, ...]] = []
        result: list[MessagePosition] = []
        for message_id, batch in items:
            stream = batch.series
            versions[stream] += 1
            position += 1
            rows.append(
                (
                    self.store_id,
                    position,
                    message_id,
                    stream,
                    versions[stream],
                    added,
                    batch.first_ts,
                    batch.last_ts,
                    len(batch),
                    source,
                    encode_points(batch),
                )
            )
            result.append(MessagePosition(stream, versions[stream], position))
        await session.executemany(
            "INSERT INTO tsconnector_agg_messages (store_id, global_position, message_id, "
            "stream, version, added_at, first_ts, last_ts, n_points, source, payload) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            rows,
        )
        await notify(session, self.channel)
        return result

    async def _last_versions(self, session: Session, streams: set[str]) -> dict[str, int]:
        """The last version of each of ``streams`` (0 for a new one)."""
        versions = dict.fromkeys(streams, 0)
        names = sorted(streams)
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            marks = ", ".join(f"${n}" for n in range(2, 2 + len(chunk)))
            rows = await session.fetch(
                "SELECT stream, max(version) AS version FROM tsconnector_agg_messages "
                f"WHERE store_id = $1 AND stream IN ({marks}) GROUP BY stream",
                self.store_id,
                *chunk,
            )
            for row in rows:
                versions[str(row["stream"])] = int(row["version"])
        return versions

    async def write(self, series: str, points: Any) -> MessagePosition:
        """Write points to the server through the journal; the message's position.

        Exactly once: the batch is logged, inserted, then stored as a message; a crash at
        any step is repaired by :meth:`recover` (see :mod:`.journal`).
        """
        from .journal import write_group

        positions = await write_group(self, as_batches({series: points}))
        return positions[0]

    async def write_many(self, data: Any) -> list[MessagePosition]:
        """Write ``{series: points}`` (or batches) as one journal group: one insert."""
        from .journal import write_group

        return await write_group(self, as_batches(data))

    def writer(self, **options: Any) -> JournalWriter:
        """A buffering journal writer: ``async with store.writer() as w: await w.add(...)``."""
        from .writer import JournalWriter

        return JournalWriter(self, **options)

    async def recover(self, *, wait: float = 0.0) -> RecoveryReport:
        """Settle every batch left in the journal by a crashed writer (see :mod:`.journal`).

        Series whose lease is still held are skipped, unless ``wait`` seconds are given
        to wait for such leases to expire.
        """
        from .journal import recover

        return await recover(self, wait=wait)

    async def resolve(self, journal_id: int, *, inserted: bool) -> MessagePosition | None:
        """Settle an ``ambiguous`` journal entry by hand: store it as a message when its
        points are on the server (``inserted=True``), else insert them first."""
        from .journal import resolve

        return await resolve(self, journal_id, inserted=inserted)

    async def journal(self) -> list[dict[str, Any]]:
        """The entries in the journal (batches not yet known to be on the server)."""
        async with self._session(None) as (s, _):
            rows = await s.fetch(
                "SELECT id, message_id, stream, writer, n_points, state, error "
                "FROM tsconnector_agg_journal WHERE store_id = $1 ORDER BY id",
                self.store_id,
            )
        return rows

    def tee_receiver(self, **options: Any) -> TeeReceiver:
        """A receiver for SiriDB's tee that appends what the server forwards (:mod:`.tee`)."""
        from .tee import TeeReceiver

        return TeeReceiver(self, **options)

    # ------------------------------------------------------------------ reading

    async def head(self) -> int:
        """The last global position (0 when empty)."""
        async with self._session(None) as (s, _):
            value = await s.fetchval(
                "SELECT head FROM tsconnector_agg_stores WHERE id = $1", self.store_id
            )
        return int(value or 0)

    async def read(
        self, stream: str, min_version: int | None = None
    ) -> AsyncIterator[StoredMessage]:
        """The messages of ``stream`` (a series) in version order."""
        async with self._session(None) as (s, _):
            rows = s.iterate(
                f"SELECT {MESSAGE_COLUMNS} FROM tsconnector_agg_messages "
                "WHERE store_id = $1 AND stream = $2 AND version >= $3 ORDER BY version",
                self.store_id,
                stream,
                min_version or 0,
            )
            async for row in rows:
                yield stored_message(row)

    async def read_all(
        self, start: int = 1, limit: int | None = None
    ) -> AsyncIterator[StoredMessage]:
        """All messages from global position ``start`` on, in global order."""
        async with self._session(None) as (s, _):
            rows = s.iterate(
                f"SELECT {MESSAGE_COLUMNS} FROM tsconnector_agg_messages "
                "WHERE store_id = $1 AND global_position >= $2 "
                "ORDER BY global_position LIMIT $3",
                self.store_id,
                start,
                limit if limit is not None else 2**62,
            )
            async for row in rows:
                yield stored_message(row)

    async def get_message(self, message_id: str) -> StoredMessage:
        """The message with this id (:class:`MessageNotFound` if none)."""
        async with self._session(None) as (s, _):
            row = await s.fetchrow(
                f"SELECT {MESSAGE_COLUMNS} FROM tsconnector_agg_messages "
                "WHERE store_id = $1 AND message_id = $2",
                self.store_id,
                str(message_id),
            )
        if row is None:
            raise MessageNotFound(f"no message {message_id!r} in store {self.name!r}")
        return stored_message(row)

    async def stream_counts(self) -> dict[str, int]:
        """Points stored per stream (series)."""
        async with self._session(None) as (s, _):
            rows = await s.fetch(
                "SELECT stream, sum(n_points) AS n FROM tsconnector_agg_messages "
                "WHERE store_id = $1 GROUP BY stream",
                self.store_id,
            )
        return {str(r["stream"]): int(r["n"]) for r in rows}

    # ------------------------------------------------------------------ streams

    def aggregated_stream(
        self,
        name: str,
        partitioner: MessagePartitioner,
        stream_wildcards: Sequence[str],
        update_batch_size: int = 100,
    ) -> AggregatedStream:
        """An aggregated stream over the series matching ``stream_wildcards`` (SQL LIKE
        patterns), split into partitions by ``partitioner``."""
        from .stream import AggregatedStream

        return AggregatedStream(
            name, self, partitioner, stream_wildcards, update_batch_size=update_batch_size
        )

    async def truncate(self) -> None:
        """Delete every message and journal entry; empty the store's aggregated streams."""
        async with self._session(None) as (s, _):
            await s.execute(
                "UPDATE tsconnector_agg_stores SET head = 0 WHERE id = $1", self.store_id
            )
            for table in ("tsconnector_agg_messages", "tsconnector_agg_journal"):
                await s.execute(f"DELETE FROM {table} WHERE store_id = $1", self.store_id)
            from .stream import reset_stream

            for row in await s.fetch(
                "SELECT id FROM tsconnector_agg_streams WHERE store_id = $1", self.store_id
            ):
                await reset_stream(s, int(row["id"]))
            await s.commit()
