"""Spool: the writer's on-disk journal of insert batches (msgpack records, CRC framed).

A spool directory holds segment files ``spool-<n>.log`` of records framed by
:mod:`tsconnector.durable` (length, CRC32, msgpack body); batch records are fsynced
before they count as written, and a batch stays until an ack record for it is
appended. Torn or corrupt tails (a crash in the middle of a write) are detected by
length/CRC and ignored. The spool also keeps ``position``: how many points were ever
written to it, so an ingest process can tell where to resume its source after a crash.
One writer at a time (``flock``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .durable import fsync_dir, iter_bodies, pack_record, unpack_record
from .exceptions import TsConnectorError

__all__ = ["Spool", "SpoolLocked", "SpoolRecord", "points_as_pairs"]

log = logging.getLogger("tsconnector.spool")

_PREFIX = "spool-"
_SUFFIX = ".log"


class SpoolLocked(TsConnectorError):
    """Another writer holds this spool directory."""


@dataclass
class SpoolRecord:
    """Where one spooled batch lives and what it holds (the index kept in memory)."""

    seq: int
    segment: Path
    offset: int
    size: int
    points: int
    end: int
    recovered: bool = False


def points_as_pairs(points: Any) -> list[Any]:
    """``points`` (a list of pairs or a numpy ``(timestamps, values)`` pair) as a list of pairs."""
    if isinstance(points, tuple) and len(points) == 2 and hasattr(points[0], "tolist"):
        return list(zip(points[0].tolist(), points[1].tolist()))
    return points if isinstance(points, list) else list(points)


def encode_record(body: Mapping[str, Any]) -> bytes:
    """One framed record: length, CRC32 of the msgpack body, body."""
    return pack_record(body)


def iter_records(data: bytes) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(offset, size, body)`` of every intact record; stops at a torn or corrupt one."""
    for offset, size, raw in iter_bodies(data):
        try:
            record = unpack_record(raw)
        except Exception:
            return
        if not isinstance(record, dict):
            return
        yield offset, size, record


class Spool:
    """A directory of segment files holding batches until the server acknowledged them.

    ``open()`` locks the directory and returns the batches a previous process left
    (marked ``recovered``). ``append`` writes and fsyncs (blocking: call it from a worker
    thread); ``read`` and ``ack`` are cheap and may run on the event loop.
    """

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = 16 << 20) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.position = 0
        self._next_seq = 1
        self._next_segment = 1
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._current: Path | None = None
        self._current_fd: int | None = None
        self._current_size = 0
        self._pending: dict[Path, set[int]] = {}
        self.pending_points = 0
        self.pending_records = 0

    # ------------------------------------------------------------------ open

    def open(self) -> list[SpoolRecord]:
        """Lock the directory, recover what is left, start a new segment."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolLocked(f"spool {self.directory} is in use by another writer") from None
        self._lock_fd = fd
        records, stale = self._recover()
        self._start_segment()
        for path in stale:
            path.unlink()
        if stale:
            fsync_dir(self.directory)
        return records

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
                try:
                    found.append((int(name[len(_PREFIX) : -len(_SUFFIX)]), path))
                except ValueError:
                    continue
        return sorted(found)

    def _recover(self) -> tuple[list[SpoolRecord], list[Path]]:
        batches: dict[int, SpoolRecord] = {}
        acked: set[int] = set()
        segments = self._segments()
        for number, path in segments:
            self._next_segment = max(self._next_segment, number + 1)
            data = path.read_bytes()
            used = 0
            for offset, size, body in iter_records(data):
                used = offset + size
                kind = body.get("t")
                self.position = max(self.position, int(body.get("end", 0)))
                seq = int(body.get("seq", 0))
                self._next_seq = max(self._next_seq, seq + 1)
                if kind == "b":
                    batches[seq] = SpoolRecord(
                        seq, path, offset, size, int(body["n"]), int(body["end"]), True
                    )
                elif kind == "a":
                    acked.add(seq)
            if used < len(data):
                log.warning("spool %s: ignoring %d torn bytes at its end", path, len(data) - used)
        pending = [r for s, r in sorted(batches.items()) if s not in acked]
        for record in pending:
            self._pending.setdefault(record.segment, set()).add(record.seq)
            self.pending_points += record.points
            self.pending_records += 1
        return pending, [path for _, path in segments if path not in self._pending]

    def _start_segment(self) -> None:
        if self._current_fd is not None:
            os.close(self._current_fd)
        path = self.directory / f"{_PREFIX}{self._next_segment:010d}{_SUFFIX}"
        self._next_segment += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        header = encode_record({"t": "h", "end": self.position, "seq": self._next_seq - 1})
        os.write(fd, header)
        os.fsync(fd)
        fsync_dir(self.directory)
        old = self._current
        self._current, self._current_fd, self._current_size = path, fd, len(header)
        if old is not None and old not in self._pending:
            old.unlink()

    # ----------------------------------------------------------------- write

    def append(self, data: Mapping[str, Any], points: int) -> SpoolRecord:
        """Write one batch ``{series: points}`` and fsync it; blocking (worker thread)."""
        pairs = {name: points_as_pairs(p) for name, p in data.items()}
        with self._lock:
            if self._current_fd is None:
                raise RuntimeError("the spool is not open")
            if self._current_size >= self.segment_bytes:
                self._start_segment()
            seq = self._next_seq
            self._next_seq += 1
            end = self.position + points
            frame = encode_record({"t": "b", "seq": seq, "n": points, "end": end, "d": pairs})
            assert self._current is not None
            record = SpoolRecord(seq, self._current, self._current_size, len(frame), points, end)
            os.write(self._current_fd, frame)
            self._current_size += len(frame)
            os.fsync(self._current_fd)
            self.position = end
            self._pending.setdefault(record.segment, set()).add(seq)
            self.pending_points += points
            self.pending_records += 1
        return record

    def read(self, record: SpoolRecord) -> dict[str, list[Any]]:
        """The batch ``{series: [[ts, value], ...]}`` of ``record``."""
        with open(record.segment, "rb") as fh:
            fh.seek(record.offset)
            data = fh.read(record.size)
        for _, _, body in iter_records(data):
            if body.get("seq") == record.seq and body.get("t") == "b":
                return dict(body["d"])
        raise TsConnectorError(f"spool record {record.seq} in {record.segment} is unreadable")

    def ack(self, record: SpoolRecord) -> None:
        """Mark ``record`` delivered; a segment with nothing pending is deleted.

        Acks are not fsynced: a lost ack only makes a restarted writer check the batch.
        """
        with self._lock:
            seqs = self._pending.get(record.segment)
            if seqs is None or record.seq not in seqs:
                return
            seqs.discard(record.seq)
            self.pending_points -= record.points
            self.pending_records -= 1
            if not seqs:
                del self._pending[record.segment]
                if record.segment != self._current:
                    record.segment.unlink(missing_ok=True)
                    return
                if self._current_size >= self.segment_bytes // 4:
                    self._start_segment()  # reclaim the space of a fully acked segment
                    return
            frame = encode_record({"t": "a", "seq": record.seq})
            if record.segment == self._current and self._current_fd is not None:
                os.write(self._current_fd, frame)
                self._current_size += len(frame)
            else:
                with open(record.segment, "ab") as fh:
                    fh.write(frame)

    @property
    def size_bytes(self) -> int:
        """Bytes used by the segment files."""
        total = 0
        for _, path in self._segments():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def close(self) -> None:
        """Close the current segment and release the directory lock."""
        with self._lock:
            if self._current_fd is not None:
                os.close(self._current_fd)
                self._current_fd = None
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None
