"""Durability for one database directory: a write-ahead log plus periodic snapshots.

Every :meth:`Database.commit` record is appended to ``wal-<gen>.log`` as one frame
(``<II`` length and CRC32, then the msgpack body). Answers wait for :meth:`Store.sync`,
which fsyncs on a worker thread; requests that arrive meanwhile share the next fsync
(group commit). A snapshot (``snapshot-<gen>.msgpack``, written to a temp file, fsynced,
renamed) holds everything logged before generation ``gen``; older logs are then removed.
Recovery loads the newest valid snapshot and replays the later logs, dropping a torn or
corrupt tail instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..durable import FRAME, frame_body, fsync_dir, iter_bodies, pack_record, unpack_record
from .model import Database, Record

__all__ = ["FRAME", "Store", "encode_frame", "iter_frames", "read_meta"]

#: One log record: length and CRC32 of the body, then the body.
encode_frame = frame_body

log = logging.getLogger(__name__)

_LOG_RE = re.compile(r"^wal-(\d{10})\.log$")
_SNAP_RE = re.compile(r"^snapshot-(\d{10})\.msgpack$")
META_FILE = "meta.json"

#: Take a snapshot once this many log bytes were written since the last one.
DEFAULT_SNAPSHOT_BYTES = 64 * 1024 * 1024
#: Also take one this often (seconds) when anything was logged.
DEFAULT_SNAPSHOT_INTERVAL = 300.0


def iter_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(end_offset, body)`` for each intact record; stop at the first bad one."""
    for offset, size, body in iter_bodies(data):
        yield offset + size, body


def _log_name(gen: int) -> str:
    return f"wal-{gen:010d}.log"


def _snap_name(gen: int) -> str:
    return f"snapshot-{gen:010d}.msgpack"


def read_meta(directory: Path) -> dict[str, Any] | None:
    """The database's stored name and precision, if the directory has them."""
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


class Store:
    """The on-disk journal of one :class:`Database` (its ``journal`` callable)."""

    def __init__(
        self,
        directory: Path,
        db: Database,
        *,
        snapshot_bytes: int = DEFAULT_SNAPSHOT_BYTES,
        snapshot_interval: float = DEFAULT_SNAPSHOT_INTERVAL,
    ) -> None:
        self.directory = directory
        self.db = db
        self.snapshot_bytes = snapshot_bytes
        self.snapshot_interval = snapshot_interval
        self._gen = 0
        self._buf = bytearray()
        self._chunks: list[tuple[int, bytes]] = []
        self._seq = 0
        self._synced = 0
        self._log_bytes = 0
        self._fds: dict[int, int] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._snap_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._log_executor = ThreadPoolExecutor(1, thread_name_prefix=f"wal-{db.name}")
        self._snap_executor = ThreadPoolExecutor(1, thread_name_prefix=f"snap-{db.name}")
        self._closed = False
        self.recovered_records = 0

    # -- recovery --------------------------------------------------------------------
    def open(self) -> None:
        """Load the snapshot and logs into ``db``, then start a fresh log generation."""
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = self.directory / META_FILE
        if not meta.exists():
            tmp = meta.with_suffix(".tmp")
            tmp.write_text(json.dumps({"name": self.db.name, "precision": self.db.precision}))
            os.replace(tmp, meta)
            fsync_dir(self.directory)
        logs, snaps = self._scan()
        base = 0
        for gen in sorted(snaps, reverse=True):
            snap = self._load_snapshot(self.directory / _snap_name(gen))
            if snap is not None:
                self.db.restore(snap)
                base = gen
                break
            log.warning("ignoring unreadable snapshot %s", _snap_name(gen))
        for gen in sorted(logs):
            if gen >= base:
                self._replay(self.directory / _log_name(gen))
        self._gen = max([base - 1, *logs]) + 1
        self._remove_older(base, keep_snapshot=base)
        self.db.journal = self.append

    def _scan(self) -> tuple[list[int], list[int]]:
        logs, snaps = [], []
        for entry in os.listdir(self.directory):
            if m := _LOG_RE.match(entry):
                logs.append(int(m.group(1)))
            elif m := _SNAP_RE.match(entry):
                snaps.append(int(m.group(1)))
        return logs, snaps

    @staticmethod
    def _load_snapshot(path: Path) -> dict[str, Any] | None:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        for _, body in iter_frames(data):
            try:
                snap = unpack_record(body)
            except Exception:
                return None
            return snap if isinstance(snap, dict) else None
        return None

    def _replay(self, path: Path) -> None:
        data = path.read_bytes()
        good = 0
        for stop, body in iter_frames(data):
            good = stop
            try:
                record = unpack_record(body)
                self.db.apply(tuple(record))
                self.recovered_records += 1
            except Exception:  # a record that cannot apply was never applied either
                log.warning("skipping unreplayable record in %s", path.name, exc_info=True)
        if good < len(data):
            log.warning("dropping %d bytes of torn/corrupt tail in %s", len(data) - good, path)
            with open(path, "r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())

    def _remove_older(self, gen: int, keep_snapshot: int) -> None:
        logs, snaps = self._scan()
        for g in logs:
            if g < gen:
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / _log_name(g))
        for g in snaps:
            if g != keep_snapshot:
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / _snap_name(g))
        for entry in os.listdir(self.directory):
            if entry.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / entry)

    # -- the write path ----------------------------------------------------------------
    def append(self, record: Record) -> None:
        """Journal one record (called by ``Database.commit`` before it applies it)."""
        if self._closed:
            raise RuntimeError("the store is closed")
        frame = pack_record(record)
        self._buf += frame
        self._seq += 1
        self._log_bytes += len(frame)
        if self._log_bytes >= self.snapshot_bytes and self._snap_task is None:
            with contextlib.suppress(RuntimeError):  # no running loop: snapshot later
                self._snap_task = asyncio.get_running_loop().create_task(self.snapshot())
        elif self._timer is None and self.snapshot_interval > 0:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self.snapshot_interval, self._on_timer)

    @property
    def pending(self) -> bool:
        """True while some appended record is not yet on disk."""
        return self._synced < self._seq

    async def sync(self) -> None:
        """Wait until every record appended so far is fsynced (shared fsyncs)."""
        target = self._seq
        if target <= self._synced:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        if self._flush_task is None:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())
        await fut

    def _take_chunks(self) -> list[tuple[int, bytes]]:
        chunks, self._chunks = self._chunks, []
        if self._buf:
            chunks.append((self._gen, bytes(self._buf)))
            self._buf = bytearray()
        return chunks

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._synced < self._seq:
                target = self._seq
                chunks = self._take_chunks()
                await loop.run_in_executor(self._log_executor, self._write, chunks, self._gen)
                self._synced = target
                self._wake(None)
        except BaseException as exc:  # disk failure: every waiter learns it
            self._wake(exc if isinstance(exc, Exception) else RuntimeError("flush cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._flush_task = None

    def _wake(self, error: Exception | None) -> None:
        keep = []
        for target, fut in self._waiters:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            elif target <= self._synced:
                fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep

    def _write(self, chunks: list[tuple[int, bytes]], current: int) -> None:
        """Worker thread: append chunks to their log files, fsync, close old files."""
        touched: set[int] = set()
        created = False
        for gen, data in chunks:
            fd = self._fds.get(gen)
            if fd is None:
                path = self.directory / _log_name(gen)
                created = created or not path.exists()
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                self._fds[gen] = fd
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            touched.add(gen)
        for gen in touched:
            os.fsync(self._fds[gen])
        if created:
            fsync_dir(self.directory)
        for gen in [g for g in self._fds if g < current]:
            os.close(self._fds.pop(gen))

    # -- snapshots ---------------------------------------------------------------------
    def _on_timer(self) -> None:
        self._timer = None
        if self._log_bytes and self._snap_task is None and not self._closed:
            self._snap_task = asyncio.get_running_loop().create_task(self.snapshot())

    async def snapshot(self) -> None:
        """Write a snapshot of the current state and drop the logs it replaces."""
        try:
            data = pack_record(self.db.snapshot())
            if self._buf:
                self._chunks.append((self._gen, bytes(self._buf)))
                self._buf = bytearray()
            self._gen += 1
            self._log_bytes = 0
            gen = self._gen
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._snap_executor, self._write_snapshot, gen, data)
        except Exception:
            log.exception("snapshot of %s failed", self.db.name)
        finally:
            self._snap_task = None

    def _write_snapshot(self, gen: int, data: bytes) -> None:
        final = self.directory / _snap_name(gen)
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_dir(self.directory)
        logs, snaps = self._scan()
        for g in logs:
            if g < gen:
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / _log_name(g))
        for g in snaps:
            if g < gen:
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / _snap_name(g))

    async def close(self, *, final_snapshot: bool = True) -> None:
        """Flush, optionally snapshot, and release files and threads."""
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._snap_task is not None:
            await asyncio.shield(self._snap_task)
        try:
            await self.sync()
            if final_snapshot and self._log_bytes:
                await self.snapshot()
            await self.sync()
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
