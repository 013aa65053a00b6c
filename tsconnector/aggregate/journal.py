"""The journal: points written to the server exactly once, then stored as messages.

A write group (one or more series) goes through four steps:

1. **lease** — take the lease of each series (``tsconnector_agg_leases``); a series has
   one journal writer at a time. Entries a crashed writer left for these series are
   settled first (step R below).
2. **log** — count the server's points of each series in the group's time range
   (``pre_count``), then commit one journal entry per series: its points, the range and
   the count.
3. **insert** — one ``TsClient.insert`` of the whole group.
4. **commit** — in one transaction: the entries become messages (global positions,
   versions), the journal entries are deleted and the leases released.

SiriDB keeps duplicate points, so an insert must never be repeated blindly. After a
crash (or an insert whose outcome is unknown) an entry is settled by **R**, under the
series' lease: count the points in the entry's range again. Unchanged (``pre_count``):
the insert never arrived, so insert now and commit. Grown by exactly the batch's size
and every point of the batch is there: it arrived, so commit without inserting. Anything
else means another program wrote into the same range meanwhile; the entry is marked
``ambiguous`` and reported (:class:`~.errors.JournalAmbiguous`), never guessed. The
lease makes the counts meaningful: while a writer holds it no other journal writer
inserts into the series, and a crashed writer's lease must expire before recovery may
take the series over. Leases outlast ``insert_timeout`` twice over, and a writer renews
its lease right before inserting, so an insert still in flight cannot race recovery
(unless the writing process stalls for longer than the lease between renewing and
sending).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog import IntegrityError, Session
from ..exceptions import InsertError, QueryError
from . import leases
from .codec import decode_points, encode_points
from .errors import JournalAmbiguous, JournalPending
from .interfaces import MessagePosition, PointBatch
from .serverview import contains, count_points, multiset, read_points
from .wakeup import wake_local

if TYPE_CHECKING:
    from .store import MessageStore

log = logging.getLogger("tsconnector.aggregate")


def series_scope(store: MessageStore) -> str:
    return f"series:{store.store_id}"


@dataclass
class RecoveryReport:
    """What :meth:`MessageStore.recover` did."""

    committed: int = 0  #: entries found on the server and stored as messages
    inserted: int = 0  #: entries inserted now (they had not arrived), then stored
    ambiguous: list[dict[str, Any]] = field(default_factory=list)
    skipped_series: list[str] = field(default_factory=list)  #: leases still held


def merge_batches(batches: Sequence[PointBatch]) -> list[PointBatch]:
    """One batch per series (points concatenated in the order given)."""
    merged: dict[str, tuple[list[int], list[Any]]] = {}
    for batch in batches:
        ts, vals = merged.setdefault(batch.series, ([], []))
        ts.extend(batch.timestamps)
        vals.extend(batch.values)
    return [PointBatch(name, tuple(ts), tuple(v)) for name, (ts, v) in merged.items() if ts]


def _hook(store: MessageStore, step: str) -> None:
    if store._journal_hook is not None:
        store._journal_hook(step)


async def _take_leases(store: MessageStore, names: list[str], wait: float) -> None:
    """Take the leases of ``names`` (all or none), waiting up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        now = time.monotonic()
        doubt = [n for n in names if store._in_doubt.get(n, 0.0) > now]
        if doubt:  # our own insert in doubt: wait as long as any other process would
            until = max(store._in_doubt[n] for n in doubt)
            if until > deadline:
                raise JournalPending(
                    f"series {doubt[:5]} of store {store.name!r} have an insert in doubt; "
                    "recovery waits until their lease expires"
                )
            await asyncio.sleep(until - now)
            continue
        async with store.catalog.session() as s:
            await leases.relaxed(s)
            busy = await leases.take_all(
                s, series_scope(store), names, store.owner, store.lease_seconds
            )
            if not busy:
                await s.commit()
                return
            await s.rollback()
        if time.monotonic() >= deadline:
            raise JournalPending(
                f"series {busy[:5]} of store {store.name!r} are being written by another "
                "writer (their journal lease is held)"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def _release(store: MessageStore, names: list[str]) -> None:
    async with store.catalog.session() as s:
        await leases.relaxed(s)
        await leases.release(s, series_scope(store), names, store.owner)
        await s.commit()


@asynccontextmanager
async def local_locks(store: MessageStore, names: Sequence[str]) -> AsyncIterator[None]:
    """Serialise this store object's own tasks on ``names`` (leases are per owner, so two
    tasks of one owner would otherwise both hold a series' lease)."""
    locks = store._series_locks

    def unuse(name: str) -> None:
        locks[name][1] -= 1
        if locks[name][1] == 0:
            del locks[name]

    taken: list[str] = []
    try:
        for name in sorted(set(names)):
            entry = locks.setdefault(name, [asyncio.Lock(), 0])
            entry[1] += 1
            try:
                await entry[0].acquire()
            except BaseException:
                unuse(name)
                raise
            taken.append(name)
        yield
    finally:
        for name in reversed(taken):
            locks[name][0].release()
            unuse(name)


async def write_group(store: MessageStore, batches: Sequence[PointBatch]) -> list[MessagePosition]:
    """Steps 1-4 for ``batches``; the positions of the messages, one per series."""
    await store.open()
    if store.client is None:
        raise RuntimeError("this store has no client: it cannot write to the server")
    group = merge_batches(batches)
    if not group:
        return []
    async with local_locks(store, [b.series for b in group]):
        return await _write_locked(store, group)


async def _write_locked(store: MessageStore, group: list[PointBatch]) -> list[MessagePosition]:
    client = store.client
    assert client is not None
    names = [b.series for b in group]
    await _take_leases(store, names, wait=store.lease_seconds)
    in_doubt = False  # an insert was sent and its outcome is unknown
    try:
        await _settle_pending(store, names)
        start = min(b.first_ts for b in group)
        end = max(b.last_ts for b in group) + 1
        try:
            counts = await count_points(client, names, start, end, timeout=store.insert_timeout)
        except QueryError as exc:  # e.g. timestamps out of range: the insert would fail too
            raise InsertError(f"the server refused the batch's time range: {exc}") from exc
        entries = [(str(uuid.uuid4()), batch) for batch in group]
        async with store.catalog.session() as s:
            rows = [
                (
                    store.store_id,
                    message_id,
                    batch.series,
                    store.owner,
                    start,
                    end,
                    counts[batch.series],
                    batch.first_ts,
                    batch.last_ts,
                    len(batch),
                    encode_points(batch),
                    int(time.time() * 1e6),
                )
                for message_id, batch in entries
            ]
            await s.executemany(
                "INSERT INTO tsconnector_agg_journal (store_id, message_id, stream, writer, "
                "range_start, range_end, pre_count, first_ts, last_ts, n_points, payload, "
                "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                rows,
            )
            await _renew_in(s, store, names)  # the lease now outlasts the insert
            await s.commit()
        _hook(store, "logged")
        in_doubt = True
        try:
            await client.insert({b.series: b.points() for b in group}, store.insert_timeout)
        except InsertError:
            in_doubt = False
            await _forget(store, [m for m, _ in entries])
            raise
        in_doubt = False
        _hook(store, "inserted")
        async with store.catalog.session() as s:
            positions = await store.append_in(s, entries, "journal")
            await _delete_entries(s, store, [m for m, _ in entries])
            await leases.release(s, series_scope(store), names, store.owner)
            await s.commit()
        wake_local(store.catalog, store.channel)
        return positions
    except BaseException as exc:
        if in_doubt:
            # The server may still apply the insert: keep the leases, so recovery waits
            # until they expire (twice the insert timeout) before it counts.
            until = time.monotonic() + store.lease_seconds
            for name in names:
                store._in_doubt[name] = until
            log.warning(
                "insert of %d series has an unknown outcome (%r); its journal entries wait "
                "for recovery once the lease expires",
                len(names),
                exc,
            )
            raise
        try:
            await _release(store, names)
        except Exception:  # the lease expires by itself
            log.debug("could not release journal leases", exc_info=True)
        raise


async def _insert_or_doubt(store: MessageStore, data: dict[str, Any]) -> None:
    """Insert ``data``; when the outcome is unknown, keep the leases and remember it."""
    assert store.client is not None
    try:
        await store.client.insert(data, store.insert_timeout)
    except InsertError:
        raise
    except BaseException:
        until = time.monotonic() + store.lease_seconds
        for name in data:
            store._in_doubt[name] = until
        raise


async def _renew_in(s: Session, store: MessageStore, names: list[str]) -> None:
    """Extend our leases in ``s`` right before inserting (see the module docstring)."""
    busy = await leases.take_all(s, series_scope(store), names, store.owner, store.lease_seconds)
    if busy:
        await s.rollback()
        raise JournalPending(f"lost the journal lease of {busy[:5]} before inserting")


async def _renew(store: MessageStore, names: list[str]) -> None:
    """Extend our leases in a transaction of their own."""
    async with store.catalog.session() as s:
        await _renew_in(s, store, names)
        await s.commit()


async def _delete_entries(s: Session, store: MessageStore, message_ids: list[str]) -> None:
    await s.executemany(
        "DELETE FROM tsconnector_agg_journal WHERE store_id = $1 AND message_id = $2",
        [(store.store_id, m) for m in message_ids],
    )


async def _forget(store: MessageStore, message_ids: list[str]) -> None:
    """Drop entries whose insert the server refused (nothing of it was stored)."""
    async with store.catalog.session() as s:
        await _delete_entries(s, store, message_ids)
        await s.commit()


async def _positions_of(store: MessageStore, message_ids: list[str]) -> list[MessagePosition]:
    async with store.catalog.session() as s:
        result = []
        for message_id in message_ids:
            row = await s.fetchrow(
                "SELECT stream, version, global_position FROM tsconnector_agg_messages "
                "WHERE store_id = $1 AND message_id = $2",
                store.store_id,
                message_id,
            )
            if row is None:  # still in the journal (should not happen once settled)
                raise JournalPending(f"message {message_id} is still in the journal")
            result.append(
                MessagePosition(row["stream"], int(row["version"]), int(row["global_position"]))
            )
    return result


async def _settle_pending(store: MessageStore, names: list[str]) -> None:
    """Settle what crashed writers left for ``names`` (we hold their leases)."""
    report = await _settle_entries(store, names)
    if report.ambiguous:
        raise JournalAmbiguous(
            "the journal holds ambiguous entries for these series; settle them with "
            "store.resolve() first",
            report.ambiguous,
        )


async def _settle_entries(store: MessageStore, names: list[str]) -> RecoveryReport:
    """Step R for every journal entry of ``names``; the caller holds their leases."""
    report = RecoveryReport()
    async with store.catalog.session(readonly=True) as s:
        rows = []
        for name in names:
            rows.extend(
                await s.fetch(
                    "SELECT * FROM tsconnector_agg_journal WHERE store_id = $1 AND stream = $2 "
                    "ORDER BY id",
                    store.store_id,
                    name,
                )
            )
    for row in rows:
        if row["state"] == "ambiguous":
            report.ambiguous.append(_describe(row))
            continue
        outcome = await _settle(store, row)
        if outcome == "committed":
            report.committed += 1
        elif outcome == "inserted":
            report.inserted += 1
        else:
            report.ambiguous.append(_describe(row))
    return report


def _describe(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "payload"}


async def _settle(store: MessageStore, row: dict[str, Any]) -> str:
    """Settle one entry: ``"committed"``, ``"inserted"`` or ``"ambiguous"``."""
    client = store.client
    assert client is not None
    name = str(row["stream"])
    batch = decode_points(name, row["payload"])
    counts = await count_points(
        client,
        [name],
        int(row["range_start"]),
        int(row["range_end"]),
        timeout=store.insert_timeout,
    )
    delta = counts[name] - int(row["pre_count"])
    if delta == 0:
        await _renew(store, [name])
        await _insert_or_doubt(store, {name: batch.points()})
        _hook(store, "recovered-insert")
        await _commit_entry(store, row, batch)
        return "inserted"
    if delta == len(batch):
        have = multiset(
            await read_points(
                client, name, batch.first_ts, batch.last_ts + 1, timeout=store.insert_timeout
            )
        )
        if contains(have, multiset(batch)):
            await _commit_entry(store, row, batch)
            return "committed"
    reason = (
        f"server has {counts[name]} points in [{row['range_start']}, {row['range_end']}), "
        f"{row['pre_count']} before the batch of {len(batch)}"
    )
    log.error("journal entry %s of %r is ambiguous: %s", row["message_id"], name, reason)
    async with store.catalog.session() as s:
        await s.execute(
            "UPDATE tsconnector_agg_journal SET state = 'ambiguous', error = $1 WHERE id = $2",
            reason,
            row["id"],
        )
        await s.commit()
    row["state"], row["error"] = "ambiguous", reason
    return "ambiguous"


async def _commit_entry(
    store: MessageStore, row: dict[str, Any], batch: PointBatch
) -> MessagePosition:
    """Store the entry as a message and drop it from the journal (one transaction)."""
    async with store.catalog.session() as s:
        try:
            async with s.savepoint():
                [position] = await store.append_in(s, [(str(row["message_id"]), batch)], "journal")
        except IntegrityError:  # already a message (another recoverer was faster)
            position = MessagePosition(batch.series, 0, 0)
        await s.execute("DELETE FROM tsconnector_agg_journal WHERE id = $1", row["id"])
        await s.commit()
    wake_local(store.catalog, store.channel)
    return position


async def recover(store: MessageStore, *, wait: float = 0.0) -> RecoveryReport:
    """Settle the whole journal of ``store`` (see :meth:`MessageStore.recover`)."""
    await store.open()
    if store.client is None:
        raise RuntimeError("recovery needs the store's client (it asks the server)")
    async with store.catalog.session(readonly=True) as s:
        rows = await s.fetch(
            "SELECT DISTINCT stream FROM tsconnector_agg_journal WHERE store_id = $1",
            store.store_id,
        )
    report = RecoveryReport()
    for name in sorted(str(r["stream"]) for r in rows):
        async with local_locks(store, [name]):
            try:
                await _take_leases(store, [name], wait=wait)
            except JournalPending:
                report.skipped_series.append(name)
                continue
            part = await _settle_entries(store, [name])  # an insert in doubt keeps the lease
            await _release(store, [name])
        report.committed += part.committed
        report.inserted += part.inserted
        report.ambiguous.extend(part.ambiguous)
    return report


async def resolve(
    store: MessageStore, journal_id: int, *, inserted: bool
) -> MessagePosition | None:
    """Settle an entry by hand (see :meth:`MessageStore.resolve`)."""
    await store.open()
    async with store.catalog.session(readonly=True) as s:
        row = await s.fetchrow(
            "SELECT * FROM tsconnector_agg_journal WHERE store_id = $1 AND id = $2",
            store.store_id,
            journal_id,
        )
    if row is None:
        return None
    name = str(row["stream"])
    batch = decode_points(name, row["payload"])
    async with local_locks(store, [name]):
        await _take_leases(store, [name], wait=store.lease_seconds)
        if not inserted:
            await _insert_or_doubt(store, {name: batch.points()})
        position = await _commit_entry(store, row, batch)
        await _release(store, [name])
    return position
