"""Durability for one database directory: a write-ahead log plus verified snapshots.

Log first, apply after durable, then answer. :meth:`Store.append` (the database's
journal) frames a record into the current log generation ``wal-<gen>.log``; a flush task
writes and fsyncs everything appended so far on a worker thread (group commit: requests
that arrive during one fsync share the next), and only then applies the records to the
database, in log order, and wakes their waiters (:meth:`Store.ticket`). So the state in
memory is always a prefix of what is on disk: nothing is visible before it is durable.

A failed write or fsync (disk full, file size limit, I/O error) means *not applied*: the
file is truncated back to its last durable size (so a partial record never hides what
follows), the records are dropped, and their waiters get :class:`JournalError`. The next
flush tries again, so freeing space brings the server back without a restart.

A snapshot ``snapshot-<gen>.msgpack`` holds exactly the logs before ``gen``: the log
generation is switched, the state is captured once every record of the older
generations was applied (before any newer one), written to a temporary file, fsynced,
read back and verified, renamed, and only then are the older logs and snapshots removed.
Recovery (:mod:`.recovery`) loads the newest snapshot and replays the later logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from ..durable import (
    FRAME,
    frame_body,
    frame_record,
    fsync_dir,
    iter_bodies,
    write_all,
)
from .errors import DamagedDataError
from .internal import InternalErrors
from .model import Database, Record
from .points import Columns
from .ratelog import RateLimitedLog
from .recovery import (
    SNAP_TMP_RE,
    Recovered,
    log_name,
    recover,
    scan_generations,
    snap_name,
)
from .snapshot import snapshot_frames, write_snapshot

__all__ = [
    "ASIDE_DIR",
    "DEFAULT_SNAPSHOT_BYTES",
    "DEFAULT_SNAPSHOT_INTERVAL",
    "FRAME",
    "META_FILE",
    "JournalError",
    "Store",
    "encode_frame",
    "iter_frames",
    "read_meta",
]

#: A record in the first framing (what logs of earlier versions hold; still read).
encode_frame = frame_body

log = logging.getLogger(__name__)

META_FILE = "meta.json"
#: Where damaged files and cut-off torn tails are moved (never deleted).
ASIDE_DIR = "damaged"

#: Take a snapshot once this many log bytes were written since the last one.
DEFAULT_SNAPSHOT_BYTES = 64 * 1024 * 1024
#: Also take one this often (seconds) when anything was logged.
DEFAULT_SNAPSHOT_INTERVAL = 300.0


class JournalError(OSError):
    """A journal write failed: the request's records were not stored and not applied."""


def iter_frames(data: bytes) -> Any:
    """``(end_offset, body)`` of each intact record of the first framing; stops at a bad one."""
    for offset, size, body in iter_bodies(data):
        yield offset + size, body


def read_meta(directory: Path, *, repair: bool = False) -> dict[str, Any] | None:
    """The database's stored name and precision; None when the directory has none.

    A damaged ``meta.json`` raises :class:`DamagedDataError` (None with ``repair``).
    """
    path = directory / META_FILE
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        if repair:
            return None
        offset = getattr(exc, "pos", 0)
        raise DamagedDataError(
            f"damaged data in {path} at byte {offset}: not valid JSON. The server did not "
            "start and changed nothing; start it with --repair (repair=True) to rewrite it",
            [{"file": str(path), "offset": offset, "bytes": len(text), "records": 1,
              "reason": "invalid JSON"}],
        ) from None
    if not isinstance(meta, dict) or meta.get("precision") not in (0, 1, 2, 3):
        if repair:
            return None
        raise DamagedDataError(
            f"damaged data in {path} at byte 0: no valid precision. The server did not "
            "start and changed nothing; start it with --repair (repair=True) to rewrite it"
        )
    return meta


@dataclass(eq=False)
class _Chunk:
    """Records of one log generation appended between two flushes, framed in ``data``."""

    gen: int
    data: bytearray = field(default_factory=bytearray)
    records: list[Record] = field(default_factory=list)
    last: int = 0  # sequence number of the last record


def _encode_value(obj: Any) -> Any:
    """msgpack's hook for the record values it cannot pack itself: insert columns."""
    if isinstance(obj, Columns):
        return obj.encode()
    raise TypeError(f"cannot journal a {type(obj).__name__}")


def _retrieve(fut: asyncio.Future[None]) -> None:
    """Mark a waiter's exception as seen (its request may have gone away)."""
    if not fut.cancelled():
        fut.exception()


class Store:
    """The on-disk journal of one :class:`Database` (its ``journal`` callable)."""

    def __init__(
        self,
        directory: Path,
        db: Database,
        *,
        snapshot_bytes: int = DEFAULT_SNAPSHOT_BYTES,
        snapshot_interval: float = DEFAULT_SNAPSHOT_INTERVAL,
        repair: bool = False,
        errors: InternalErrors | None = None,
        rate_log: RateLimitedLog | None = None,
    ) -> None:
        self.directory = directory
        self.db = db
        self.snapshot_bytes = snapshot_bytes
        self.snapshot_interval = snapshot_interval
        self.repair = repair
        self._errors = errors or InternalErrors()
        self._rlog = rate_log or RateLimitedLog(log)
        self._gen = 0
        self._chunks: deque[_Chunk] = deque()
        self._inflight: _Chunk | None = None
        self._seq = 0  # records appended
        self._done = 0  # records applied or failed, in order
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._log_bytes = 0
        # Owned by the log thread: open log files and their durable sizes.
        self._fds: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self._dir_dirty = False
        self._flush_task: asyncio.Task[None] | None = None
        self._snap_task: asyncio.Task[bool] | None = None
        self._capture: tuple[int, asyncio.Future[list[bytes]]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._snap_backoff = 0.0
        self._snap_not_before = 0.0
        self._log_executor = ThreadPoolExecutor(1, thread_name_prefix=f"wal-{db.name}")
        self._snap_executor = ThreadPoolExecutor(1, thread_name_prefix=f"snap-{db.name}")
        self._closed = False
        self.recovered_records = 0
        #: Journal writes that failed (each failed the requests in it).
        self.failed_writes = 0
        #: What recovery found and did: torn tails cut, damage repaired (dicts).
        self.report: list[dict[str, Any]] = []

    # -- recovery --------------------------------------------------------------------
    def open(self) -> None:
        """Load the snapshot and logs into ``db``, then start a fresh log generation.

        Raises :class:`DamagedDataError` (changing nothing) when a file is damaged and
        ``repair`` is off.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        meta_ok = read_meta(self.directory, repair=self.repair) is not None
        found = recover(self.directory, self.db, repair=self.repair)
        self.recovered_records = found.records
        aside: Path | None = None
        if found.torn:
            aside = self._aside()
            self._cut_torn_tails(found, aside)
        self._gen = found.next_gen
        if found.damage:
            aside = aside or self._aside()
            self._repair(found, aside)
        else:
            self._retire(found.base)
        if not meta_ok:
            self._write_meta(aside)
        self.db.journal = self.append

    def _aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        base = self.directory / ASIDE_DIR / stamp
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{stamp}-{n}")
        path.mkdir(parents=True)
        return path

    def _cut_torn_tails(self, found: Recovered, aside: Path) -> None:
        for path, damage in found.torn:
            with open(path, "r+b") as fh:
                fh.seek(damage.offset)
                tail = fh.read()
                keep = aside / f"{path.name}.torn-at-{damage.offset}"
                keep.write_bytes(tail)
                fh.truncate(damage.offset)
                fh.flush()
                os.fsync(fh.fileno())
            fsync_dir(aside)
            entry = {"file": str(path), "offset": damage.offset, "bytes": damage.size,
                     "reason": f"torn tail ({damage.reason})", "kept_in": str(keep)}
            self.report.append(entry)
            log.warning(
                "%s: cut off a torn tail of %d bytes at byte %d (an interrupted write, "
                "never acknowledged); its bytes are kept in %s",
                path, damage.size, damage.offset, keep,
            )

    def _repair(self, found: Recovered, aside: Path) -> None:
        """Write a verified snapshot of what was recovered, then move damage aside."""
        gen = self._gen = max(self._gen, found.base + 1)  # newer than every file here
        write_snapshot(self.directory / snap_name(gen), snapshot_frames(self.db.snapshot()))
        for path in sorted(found.damaged_files):
            if path.exists():
                os.replace(path, aside / path.name)
        fsync_dir(self.directory)
        fsync_dir(aside)
        lost = found.describe()
        for entry in lost:
            entry["moved_to"] = str(aside / Path(entry["file"]).name)
            log.warning(
                "repaired %s: %d damaged bytes at byte %d (%s, about %d record(s)) lost; "
                "the file is kept in %s",
                entry["file"], entry["bytes"], entry["offset"], entry["reason"],
                entry["records"], aside,
            )
        self.report.extend(lost)
        (aside / "report.json").write_text(json.dumps(self.report, indent=1))
        self._retire(gen)

    def _retire(self, gen: int) -> None:
        """Remove the logs and snapshots that the snapshot of ``gen`` covers."""
        logs, snaps = scan_generations(self.directory)
        for g, path in [*logs.items(), *snaps.items()]:
            if g < gen:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        for entry in self.directory.iterdir():
            m = SNAP_TMP_RE.match(entry.name)
            if m and int(m.group(1)) < gen:  # our own leftover of an interrupted snapshot
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    def _write_meta(self, aside: Path | None) -> None:
        meta = self.directory / META_FILE
        if meta.exists():  # damaged (repair): keep it aside
            aside = aside or self._aside()
            os.replace(meta, aside / META_FILE)
        tmp = self.directory / (META_FILE + ".tmp")
        with open(tmp, "w") as fh:
            fh.write(json.dumps({"name": self.db.name, "precision": self.db.precision}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, meta)
        fsync_dir(self.directory)

    # -- the write path ----------------------------------------------------------------
    def append(self, record: Record) -> None:
        """Journal one record; it is applied to the database once it is durable."""
        if self._closed:
            raise JournalError("the journal is closed; nothing was stored")
        frame = frame_record(msgpack.packb(record, use_bin_type=True, default=_encode_value))
        chunks = self._chunks
        if chunks and chunks[-1].gen == self._gen:
            chunk = chunks[-1]
        else:
            chunk = _Chunk(self._gen)
            chunks.append(chunk)
        chunk.data += frame
        chunk.records.append(record)
        self._seq += 1
        chunk.last = self._seq
        self._log_bytes += len(frame)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (direct use): flushed by sync() or close()
            return
        if self._flush_task is None:
            self._flush_task = loop.create_task(self._flush())
        self._schedule_snapshot(loop)

    @property
    def seq(self) -> int:
        """How many records were appended so far."""
        return self._seq

    @property
    def pending(self) -> bool:
        """True while some appended record is neither applied nor failed."""
        return self._done < self._seq

    def ticket(self) -> asyncio.Future[None] | None:
        """A future for every record appended so far: done once they are applied, or
        failed with :class:`JournalError`; None when nothing is pending."""
        target = self._seq
        if target <= self._done:
            return None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        fut.add_done_callback(_retrieve)
        self._waiters.append((target, fut))
        if self._flush_task is None:
            self._flush_task = loop.create_task(self._flush())
        return fut

    async def sync(self) -> None:
        """Wait until every record appended so far is durable and applied (or raise
        :class:`JournalError` when the write of the last of them failed)."""
        fut = self.ticket()
        if fut is not None:
            await fut

    async def settle(self) -> None:
        """Wait until every record appended so far is applied or failed (never raises)."""
        fut = self.ticket()
        if fut is not None:
            await asyncio.wait([fut])

    def _start_write(self) -> asyncio.Future[None] | None:
        """Hand the oldest chunk to the log thread; None when nothing is waiting."""
        if not self._chunks:
            self._inflight = None
            return None
        chunk = self._inflight = self._chunks.popleft()
        return asyncio.get_running_loop().run_in_executor(
            self._log_executor, self._write, chunk.gen, chunk.data, self._gen
        )

    async def _flush(self) -> None:
        try:
            writing = self._start_write()
            while writing is not None:
                chunk = self._inflight
                assert chunk is not None
                error: Exception | None = None
                try:
                    await writing
                except Exception as exc:
                    error = exc
                chunk.data = bytearray()
                # The next write (and its fsync) runs while this chunk is applied.
                writing = self._start_write()
                if error is None:
                    self._apply(chunk)
                else:
                    self._fail(chunk, error)
                self._maybe_capture()
        finally:
            self._flush_task = None

    def _apply(self, chunk: _Chunk) -> None:
        apply = self.db.apply
        for record in chunk.records:
            try:
                apply(record)
            except Exception as exc:  # replay skips it the same way: states stay equal
                self._errors.record(f"applying a {record[0]!r} journal record", exc)
        chunk.records = []
        self._done = chunk.last
        self._wake(chunk.last, None)

    def _fail(self, chunk: _Chunk, exc: Exception) -> None:
        self.failed_writes += 1
        self._rlog.error(
            "journal:" + self.db.name,
            "journal write of %s failed, %d record(s) not stored and not applied: %s",
            self.db.name, len(chunk.records), exc,
        )
        error = JournalError(f"journal write failed, nothing of this request was stored: {exc}")
        chunk.records = []
        self._done = chunk.last
        self._wake(chunk.last, error)

    def _wake(self, upto: int, error: Exception | None) -> None:
        waiters = self._waiters
        while waiters and waiters[0][0] <= upto:
            _, fut = waiters.popleft()
            if fut.done():
                continue
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

    def _write(self, gen: int, data: bytearray, current: int) -> None:
        """Log thread: append ``data`` to generation ``gen`` and fsync it. On failure the
        file is cut back to its durable size, so nothing partial stays in it."""
        fd = self._fds.get(gen)
        if fd is None:
            path = self.directory / log_name(gen)
            self._dir_dirty = self._dir_dirty or not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            self._fds[gen] = fd
            self._sizes[gen] = os.fstat(fd).st_size
        good = self._sizes[gen]
        if os.fstat(fd).st_size != good:  # a failed write left bytes: cut them first
            os.ftruncate(fd, good)
        try:
            if self._dir_dirty:
                fsync_dir(self.directory)
                self._dir_dirty = False
            write_all(fd, data)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, good)
                os.fsync(fd)
            raise
        self._sizes[gen] = good + len(data)
        for old in [g for g in self._fds if g < current]:
            with contextlib.suppress(OSError):
                os.close(self._fds.pop(old))
            self._sizes.pop(old, None)

    # -- snapshots ---------------------------------------------------------------------
    def _schedule_snapshot(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._snap_task is not None or self._closed:
            return
        if self._log_bytes >= self.snapshot_bytes and loop.time() >= self._snap_not_before:
            self._snap_task = loop.create_task(self._snapshot())
        elif self._timer is None and self.snapshot_interval > 0:
            self._timer = loop.call_later(self.snapshot_interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._log_bytes and self._snap_task is None and not self._closed:
            self._snap_task = asyncio.get_running_loop().create_task(self._snapshot())

    async def snapshot(self) -> bool:
        """Write a verified snapshot and remove the logs it covers; False if it failed
        (the logs are then kept, and the failure is logged)."""
        if self._snap_task is None:
            self._snap_task = asyncio.get_running_loop().create_task(self._snapshot())
        return await asyncio.shield(self._snap_task)

    async def _snapshot(self) -> bool:
        loop = asyncio.get_running_loop()
        boundary = self._gen + 1
        self._gen = boundary
        self._log_bytes = 0
        fut: asyncio.Future[list[bytes]] = loop.create_future()
        self._capture = (boundary, fut)
        if self._chunks and self._flush_task is None:
            self._flush_task = loop.create_task(self._flush())
        try:
            self._maybe_capture()
            frames = await fut
            await loop.run_in_executor(self._snap_executor, self._write_snapshot, boundary, frames)
        except Exception as exc:
            self._snap_backoff = min(max(1.0, self._snap_backoff * 2), 300.0)
            self._snap_not_before = loop.time() + self._snap_backoff
            self._rlog.error(
                "snapshot:" + self.db.name,
                "snapshot of %s failed (the logs are kept; retrying in %.0f s or later): %s",
                self.db.name, self._snap_backoff, exc,
            )
            return False
        finally:
            self._capture = None
            self._snap_task = None
        self._snap_backoff = 0.0
        return True

    def _maybe_capture(self) -> None:
        """Capture the state once every record before the snapshot's generation is
        applied and none after it (so the snapshot holds exactly the older logs)."""
        if self._capture is None:
            return
        boundary, fut = self._capture
        if fut.done():
            return
        if self._inflight is not None and self._inflight.gen < boundary:
            return
        if self._chunks and self._chunks[0].gen < boundary:
            return
        try:
            fut.set_result(snapshot_frames(self.db.snapshot()))
        except Exception as exc:
            self._errors.record("capturing a snapshot", exc)
            fut.set_exception(exc)

    def _write_snapshot(self, gen: int, frames: list[bytes]) -> None:
        write_snapshot(self.directory / snap_name(gen), frames)
        self._retire(gen)

    async def close(self, *, final_snapshot: bool = True) -> None:
        """Apply what is pending, optionally snapshot, and release files and threads."""
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._snap_task is not None:
            await asyncio.shield(self._snap_task)
        try:
            await self.settle()
            if final_snapshot and self._log_bytes:
                await self.snapshot()
            await self.settle()
        finally:
            self._closed = True
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._log_executor, self._close_fds)
            self._log_executor.shutdown(wait=True)
            self._snap_executor.shutdown(wait=True)

    def _close_fds(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

