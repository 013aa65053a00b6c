"""Spool: the writer's on-disk journal of insert batches (msgpack records, CRC framed).

A spool directory holds segment files ``spool-<n>.log`` of records framed by
:mod:`tsconnector.durable` (length, CRC32, msgpack body); batch records are fsynced
before they count as written (batches written together share one fsync), and series
given as numpy arrays are stored as their raw array bytes (no Python work per point).
A batch stays until an ack record for it is
appended. A write that fails (disk full) is cut back off the segment, so a segment
only ever ends in a torn record after a crash. The spool also keeps ``position``: how
many points were ever written to it, so an ingest process can tell where to resume its
source after a crash. One writer at a time (``flock``).

Recovery reads every intact record. A torn record at a segment's end (a crash in the
middle of a write) is ignored. Damage anywhere else (a flipped bit) is corruption: the
reader finds the next intact record (every record body starts with the same few bytes,
and must pass its CRC), keeps everything after it, copies the damaged bytes aside and
reports what was lost (:attr:`Spool.damage`); ``position`` never moves back for it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from .durable import FRAME, MAX_RECORD, fsync_dir, iter_bodies, pack_record, unpack_record
from .exceptions import TsConnectorError

__all__ = [
    "Spool",
    "SpoolCorrupted",
    "SpoolDamage",
    "SpoolLocked",
    "SpoolRecord",
    "points_as_pairs",
    "unencodable_series",
]

log = logging.getLogger("tsconnector.spool")

_PREFIX = "spool-"
_SUFFIX = ".log"


class SpoolLocked(TsConnectorError):
    """Another writer holds this spool directory."""


class SpoolCorrupted(TsConnectorError):
    """Spooled data was damaged on disk; ``damage`` says where and what was lost."""

    def __init__(self, message: str, damage: list[SpoolDamage]) -> None:
        super().__init__(message)
        self.damage = damage


@dataclass(frozen=True)
class SpoolDamage:
    """Bytes of a segment that hold no intact record, and what they cost.

    ``torn`` is a record cut short at the end of a segment (a crash while writing it:
    nothing acknowledged is lost). Otherwise the bytes were corrupted; ``lost_points``
    and ``lost_batches`` count the spooled batches that were in them and had not been
    delivered (found from the records around the damage), ``copy`` is where the
    damaged bytes were saved.
    """

    segment: Path
    offset: int
    size: int
    torn: bool
    lost_batches: int | None = 0
    lost_points: int | None = 0
    copy: Path | None = None


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


def unencodable_series(data: Mapping[str, Any]) -> dict[str, Exception]:
    """The series of a batch that the spool cannot encode, each with its error."""
    bad: dict[str, Exception] = {}
    for name, points in data.items():
        if _is_columns(points):
            continue
        try:
            pack_record({"d": {name: points_as_pairs(points)}})
        except Exception as exc:
            bad[name] = exc
    return bad


def _is_columns(points: Any) -> bool:
    """A numpy ``(int64 timestamps, int64 or float64 values)`` pair."""
    return (
        isinstance(points, tuple)
        and len(points) == 2
        and getattr(points[0], "dtype", None) is not None
        and getattr(points[1], "dtype", None) is not None
        and points[0].dtype.kind == "i"
        and points[1].dtype.kind in "if"
    )


def _encode_batch(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A batch's series as ``({name: pairs}, {name: (ts, values)})``: numpy series apart,
    to be written as their raw little-endian int64/float64 bytes."""
    listed: dict[str, Any] = {}
    columns: dict[str, Any] = {}
    for name, points in data.items():
        if _is_columns(points):
            columns[name] = points
        else:
            listed[name] = points_as_pairs(points)
    return listed, columns


def _batch_parts(
    seq: int, points: int, end: int, listed: dict[str, Any], columns: dict[str, Any]
) -> list[bytes | memoryview]:
    """The msgpack body of a batch record as parts that join to the encoding of
    ``{"t": "b", "seq": .., "n": .., "end": .., "d": listed, "c": {name: [ts bytes, kind,
    values bytes]}}`` (array bytes as bin 32); the arrays' bytes are parts of their own,
    never copied."""
    head = {"t": "b", "seq": seq, "n": points, "end": end, "d": listed}
    if not columns:
        return [msgpack.packb(head, use_bin_type=True)]
    packed = msgpack.packb(head, use_bin_type=True)
    parts: list[bytes | memoryview] = [bytes([packed[0] + 1]) + packed[1:] + b"\xa1c"]
    parts.append(_map_header(len(columns)))
    for name, (ts, values) in columns.items():
        kind = values.dtype.kind
        raw_ts = _raw(ts, "<i8")
        raw_values = _raw(values, "<i8" if kind == "i" else "<f8")
        parts.append(msgpack.packb(name, use_bin_type=True) + b"\x93" + _bin_header(len(raw_ts)))
        parts.append(raw_ts)
        parts.append((b"\xa1i" if kind == "i" else b"\xa1f") + _bin_header(len(raw_values)))
        parts.append(raw_values)
    return parts


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def _bin_header(n: int) -> bytes:
    return b"\xc6" + n.to_bytes(4, "big")  # bin 32: what msgpack writes for large bytes


def _raw(arr: Any, dtype: str) -> memoryview:
    """The bytes of an array in ``dtype``, without a copy when it already is one."""
    import numpy as np

    view: memoryview = np.ascontiguousarray(arr, dtype=dtype).data
    return view.cast("B")


def _decode_batch(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{series: points}`` of a batch record (numpy pairs for its array series)."""
    data = dict(body["d"])
    columns = body.get("c")
    if columns:
        import numpy as np

        for name, (ts, kind, values) in columns.items():
            dtype = "<i8" if kind == "i" else "<f8"
            data[name] = (np.frombuffer(ts, dtype="<i8").astype(np.int64),
                          np.frombuffer(values, dtype=dtype).astype(dtype[1:]))
    return data


# Every record body is a msgpack map (2 to 6 keys) whose first key is "t" (fixstr) with a
# one-letter kind: batch, ack or segment header. Candidates for resynchronising after damage.
_BODY_START = re.compile(rb"[\x82-\x86]\xa1t\xa1[abh]")


def _record_at(data: bytes, pos: int) -> tuple[int, dict[str, Any]] | None:
    """``(size, body)`` of an intact record starting at ``pos``, else None."""
    if len(data) - pos < FRAME.size:
        return None
    length, crc = FRAME.unpack_from(data, pos)
    start = pos + FRAME.size
    if length > MAX_RECORD or start + length > len(data):
        return None
    raw = data[start : start + length]
    if zlib.crc32(raw) != crc:
        return None
    try:
        body = unpack_record(raw)
    except Exception:
        return None
    if not isinstance(body, dict) or body.get("t") not in ("a", "b", "h"):
        return None
    return FRAME.size + length, body


def _is_torn(data: bytes, pos: int) -> bool:
    """True when the bytes at ``pos`` are a record cut short by the end of the data."""
    if len(data) - pos < FRAME.size or not data[pos:].strip(b"\x00"):
        return True  # (a crash may also leave the file extended with zeros)
    length: int = FRAME.unpack_from(data, pos)[0]
    return length <= MAX_RECORD and pos + FRAME.size + length > len(data)


def _next_record(data: bytes, pos: int) -> int | None:
    """Offset of the first intact record after ``pos`` (resynchronisation), or None."""
    for match in _BODY_START.finditer(data, pos + FRAME.size):
        start = match.start() - FRAME.size
        if start > pos and _record_at(data, start) is not None:
            return start
    return None


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])


Located = list[tuple[int, int, dict[str, Any]]]


def read_segment(data: bytes) -> tuple[Located, list[tuple[int, int, bool]]]:
    """Every intact record of a segment ``(offset, size, body)``, and its damaged ranges
    ``(offset, size, torn)``."""
    records: Located = []
    damaged: list[tuple[int, int, bool]] = []
    pos, end = 0, len(data)
    while pos < end:
        got = _record_at(data, pos)
        if got is not None:
            size, body = got
            records.append((pos, size, body))
            pos += size
            continue
        following = _next_record(data, pos)
        if following is None:
            damaged.append((pos, end - pos, _is_torn(data, pos)))
            break
        damaged.append((pos, following - pos, False))
        pos = following
    return records, damaged


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
        self._fresh_segment = False  # a failed write could not be cut back off
        self.pending_points = 0
        self.pending_records = 0
        #: Damaged ranges found by :meth:`open` (torn tails included).
        self.damage: list[SpoolDamage] = []

    @property
    def lost_points(self) -> int:
        """Points of undelivered batches lost to damaged segment bytes (see ``damage``;
        damage at the very end of the journal cannot be counted and adds nothing)."""
        return sum(d.lost_points or 0 for d in self.damage)

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
        read: dict[int, tuple[Path, bytes, list[tuple[int, int, dict[str, Any]]],
                              list[tuple[int, int, bool]]]] = {}
        segments = self._segments()
        for number, path in segments:
            self._next_segment = max(self._next_segment, number + 1)
            data = path.read_bytes()
            records, damaged = read_segment(data)
            read[number] = (path, data, records, damaged)
            for offset, size, body in records:
                kind = body.get("t")
                seq = int(body.get("seq", 0))
                self._next_seq = max(self._next_seq, seq + 1)
                if "end" in body:
                    self.position = max(self.position, int(body["end"]))
                if kind == "b":
                    batches[seq] = SpoolRecord(
                        seq, path, offset, size, int(body["n"]), int(body["end"]), True
                    )
                elif kind == "a":
                    acked.add(seq)
        for number, (path, data, records, damaged) in read.items():
            following = read.get(number + 1)
            for offset, size, torn in damaged:
                self.damage.append(self._assess(
                    path, data, offset, size, torn, records,
                    following[2][:1] if following else [], batches, acked,
                ))
        pending = [r for s, r in sorted(batches.items()) if s not in acked]
        for record in pending:
            self._pending.setdefault(record.segment, set()).add(record.seq)
            self.pending_points += record.points
            self.pending_records += 1
        return pending, [path for _, path in segments if path not in self._pending]

    def _assess(
        self,
        path: Path,
        data: bytes,
        offset: int,
        size: int,
        torn: bool,
        records: list[tuple[int, int, dict[str, Any]]],
        next_header: list[tuple[int, int, dict[str, Any]]],
        batches: dict[int, SpoolRecord],
        acked: set[int],
    ) -> SpoolDamage:
        """Log one damaged range, save a copy of it and count the batches lost in it.

        Batch records are numbered without gaps, each with the position after it, so
        the batches lost in the damage are the numbers missing between the intact
        records around it, and their points the gap between those positions. A lost
        batch whose ack survived was delivered and costs nothing. Damage with no
        intact record after it (the end of the journal) cannot be counted (None).
        """
        if torn:
            log.warning("spool %s: ignoring %d torn byte(s) at its end (offset %d), left by "
                        "an interrupted write", path, size, offset)
            return SpoolDamage(path, offset, size, True)
        before = [r[2] for r in records if r[0] < offset and r[2].get("t") in ("b", "h")]
        after = [r[2] for r in records if r[0] > offset and r[2].get("t") == "b"]
        if not after and next_header and next_header[0][2].get("t") == "h":
            header = next_header[0][2]  # the next segment starts where this one ended
            after = [{"seq": int(header["seq"]) + 1, "end": int(header["end"]), "n": 0}]
        lost_batches: int | None = None
        lost_points: int | None = None
        if before and after:
            low, high = int(before[-1]["seq"]), int(after[0]["seq"])
            missing = [s for s in range(low + 1, high) if s not in batches and s not in acked]
            lost_batches = len(missing)
            start, stop = int(before[-1]["end"]), int(after[0]["end"]) - int(after[0]["n"])
            lost_points = max(stop - start, 0) if missing else 0
        copy: Path | None = self.directory / f"damaged-{path.stem}-{offset}.bin"
        try:
            assert copy is not None
            copy.write_bytes(data[offset : offset + size])
        except OSError:
            copy = None
        what = (
            "an unknown number of batches (no intact record follows)" if lost_points is None
            else f"{lost_batches} undelivered batch(es), {lost_points} point(s)"
        )
        log.error("spool %s: %d damaged byte(s) at offset %d (not an interrupted write); "
                  "the intact records after them are kept; lost: %s%s", path, size, offset,
                  what, f"; the damaged bytes are saved in {copy}" if copy else "")
        return SpoolDamage(path, offset, size, False, lost_batches, lost_points, copy)

    def _start_segment(self) -> None:
        """Begin a new segment file (header record fsynced); on failure keep the old one."""
        path = self.directory / f"{_PREFIX}{self._next_segment:010d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        header = encode_record({"t": "h", "end": self.position, "seq": self._next_seq - 1})
        try:
            _write_all(fd, header)
            os.fsync(fd)
            fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._next_segment += 1
        if self._current_fd is not None:
            os.close(self._current_fd)
        old = self._current
        self._current, self._current_fd, self._current_size = path, fd, len(header)
        self._fresh_segment = False
        if old is not None and old not in self._pending:
            old.unlink()

    def _append_frame(
        self, fd: int, frame: bytes | list[bytes | memoryview], size: int, sync: bool
    ) -> None:
        """Append ``frame`` (or its parts) to a segment of ``size`` bytes; on failure cut
        it back off.

        A write that fails (disk full) leaves no partial record behind, so the segment
        stays readable to its end; if even the cut fails, the next write opens a new
        segment (the partial record is then a torn tail, as after a crash).
        """
        try:
            for part in [frame] if isinstance(frame, bytes) else frame:
                _write_all(fd, part)
            if sync:
                os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                self._fresh_segment = True
            raise

    # ----------------------------------------------------------------- write

    def append(
        self, data: Mapping[str, Any], points: int, *, skipped: int = 0
    ) -> SpoolRecord:
        """Write one batch ``{series: points}`` and fsync it; blocking (worker thread).

        ``skipped`` more points (given up by the caller) still advance ``position``.
        Raises ``OSError`` (nothing written) when the disk refuses the write.
        """
        return self.append_many([(data, points, skipped)])[0]

    def append_many(
        self, batches: Sequence[tuple[Mapping[str, Any], int, int]]
    ) -> list[SpoolRecord]:
        """Write batches ``(data, points, skipped)`` in order with one fsync (group
        commit); blocking. On ``OSError`` none of them is written."""
        bodies = [_encode_batch(data) for data, _, _ in batches]
        with self._lock:
            if self._current_fd is None:
                raise RuntimeError("the spool is not open")
            if self._current_size >= self.segment_bytes or self._fresh_segment:
                self._start_segment()
            assert self._current is not None
            assert self._current_fd is not None
            seq, position, offset = self._next_seq, self.position, self._current_size
            records: list[SpoolRecord] = []
            parts: list[bytes | memoryview] = []
            for (_, points, skipped), (listed, columns) in zip(batches, bodies):
                end = position + points + skipped
                body = _batch_parts(seq, points, end, listed, columns)
                length, crc = 0, 0
                for part in body:
                    length += len(part)
                    crc = zlib.crc32(part, crc)
                parts.append(FRAME.pack(length, crc))
                parts += body  # framed, not copied
                size = FRAME.size + length
                records.append(SpoolRecord(seq, self._current, offset, size, points, end))
                seq, position, offset = seq + 1, end, offset + size
            self._append_frame(self._current_fd, parts, self._current_size, sync=True)
            self._next_seq = seq
            self._current_size = offset
            self.position = position
            pending = self._pending.setdefault(self._current, set())
            for record in records:
                pending.add(record.seq)
                self.pending_points += record.points
                self.pending_records += 1
        return records

    def read(self, record: SpoolRecord) -> dict[str, Any]:
        """The batch ``{series: points}`` of ``record`` (numpy pairs for array series).

        Raises :class:`SpoolCorrupted` when its bytes changed since they were written.
        """
        with open(record.segment, "rb") as fh:
            fh.seek(record.offset)
            data = fh.read(record.size)
        for _, _, body in iter_records(data):
            if body.get("seq") == record.seq and body.get("t") == "b":
                return _decode_batch(body)
        damage = SpoolDamage(record.segment, record.offset, record.size, False, 1,
                             record.points)
        raise SpoolCorrupted(
            f"spool record {record.seq} ({record.points} point(s)) at offset {record.offset} "
            f"of {record.segment} is damaged", [damage],
        )

    def ack(self, record: SpoolRecord) -> None:
        """Mark ``record`` delivered; a segment with nothing pending is deleted.

        Acks are not fsynced, and a failed one is only logged: a lost ack only makes a
        restarted writer check the batch.
        """
        with self._lock:
            seqs = self._pending.get(record.segment)
            if seqs is None or record.seq not in seqs:
                return
            seqs.discard(record.seq)
            self.pending_points -= record.points
            self.pending_records -= 1
            try:
                self._write_ack(record, seqs)
            except OSError as exc:
                log.warning("spool: could not record the delivery of batch %d: %s",
                            record.seq, exc)

    def _write_ack(self, record: SpoolRecord, seqs: set[int]) -> None:
        if not seqs:
            del self._pending[record.segment]
            if record.segment != self._current:
                record.segment.unlink(missing_ok=True)
                return
            if self._current_size >= self.segment_bytes // 4:
                self._start_segment()  # reclaim the space of a fully acked segment
                return
        frame = encode_record({"t": "a", "seq": record.seq, "end": self.position})
        if record.segment == self._current and self._current_fd is not None:
            self._append_frame(self._current_fd, frame, self._current_size, sync=False)
            self._current_size += len(frame)
            return
        fd = os.open(record.segment, os.O_WRONLY | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            self._append_frame(fd, frame, size, sync=False)
        finally:
            os.close(fd)

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
