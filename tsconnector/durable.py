"""Durable record files: msgpack records framed with length and CRC32, and fsync helpers.

Shared by the embedded server's write-ahead log and the writer's spool. The first framing
(the spool's) is ``<II`` (body length, CRC32 of the body) followed by the msgpack body;
:func:`iter_bodies` stops at the first torn or corrupt record. The second framing (the
server's) starts each record with a marker so that :func:`scan_records` can resume after
a damaged region and keep every intact record behind it; it reads both framings.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

__all__ = [
    "FRAME",
    "FRAME2",
    "MAGIC",
    "MAX_RECORD",
    "Damage",
    "frame_body",
    "frame_record",
    "fsync_dir",
    "is_legacy",
    "iter_bodies",
    "pack_frame",
    "pack_record",
    "scan_records",
    "unpack_record",
    "write_all",
]

FRAME = struct.Struct("<II")
#: Bodies larger than this are treated as corruption (a torn length field).
MAX_RECORD = 1 << 30


def frame_body(body: bytes) -> bytes:
    """One record: length and CRC32 of ``body``, then ``body``."""
    return FRAME.pack(len(body), zlib.crc32(body)) + body


def pack_record(obj: Any) -> bytes:
    """``obj`` as one framed msgpack record."""
    return frame_body(msgpack.packb(obj, use_bin_type=True))


def unpack_record(body: bytes) -> Any:
    """Decode a record body (strings as ``str``, any map keys allowed)."""
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def iter_bodies(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, int, bytes]]:
    """``(offset, size, body)`` of each intact record, in order; stops at a bad one."""
    pos, end = 0, len(data)
    while end - pos >= FRAME.size:
        length, crc = FRAME.unpack_from(data, pos)
        start = pos + FRAME.size
        if length > MAX_RECORD or start + length > end:
            return
        body = bytes(data[start : start + length])
        if zlib.crc32(body) != crc:
            return
        yield pos, FRAME.size + length, body
        pos = start + length


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries (created, renamed, removed files) durable."""
    fd = os.open(Path(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- resynchronisable records ------------------------------------------------------------
#
# The server's write-ahead log and snapshots use a second framing that a reader can find
# again after damage: every record starts with ``MAGIC``, then the body length and one
# CRC32 over the length field and the body (so a damaged length is caught too). Read as a
# ``<I``, ``MAGIC`` is larger than ``MAX_RECORD``, so a file in the first framing never
# starts with it and :func:`scan_records` tells the two apart; it reads both.

#: The first bytes of every record in the second framing.
MAGIC = b"\xa7TSR"
#: Magic, body length, CRC32 of (length field + body).
FRAME2 = struct.Struct("<4sII")
_U32 = struct.Struct("<I")
#: Ways a damaged region can look; the first two are what an interrupted append leaves.
TORN_REASONS = frozenset({"incomplete", "zeros"})


def frame_record(body: bytes) -> bytes:
    """One resynchronisable record holding ``body`` (which must not be empty)."""
    size = _U32.pack(len(body))
    return MAGIC + size + _U32.pack(zlib.crc32(body, zlib.crc32(size))) + body


def pack_frame(obj: Any) -> bytes:
    """``obj`` as one resynchronisable msgpack record."""
    return frame_record(msgpack.packb(obj, use_bin_type=True))


@dataclass(frozen=True)
class Damage:
    """A region of a record file that holds no intact record.

    ``reason`` is ``"incomplete"`` (a record header whose body runs past the end of the
    file), ``"zeros"`` (only zero bytes), ``"crc"`` (a record whose checksum fails) or
    ``"garbage"`` (no record header). ``records`` estimates how many records were in it
    (record markers found inside, at least one); ``tail`` is true when it reaches the end.
    """

    offset: int
    size: int
    reason: str
    records: int
    tail: bool

    @property
    def torn(self) -> bool:
        """What an interrupted append leaves: a tail that is incomplete or zeroed."""
        return self.tail and self.reason in TORN_REASONS


def _v2_at(data: bytes, pos: int, end: int) -> tuple[int, bytes] | str:
    """The record at ``pos`` in the second framing as ``(size, body)``, or why not."""
    if end - pos < FRAME2.size:
        tail = data[pos:end]
        return "incomplete" if MAGIC.startswith(tail[: len(MAGIC)]) else "garbage"
    magic, length, crc = FRAME2.unpack_from(data, pos)
    if magic != MAGIC:
        return "garbage"
    if length == 0 or length > MAX_RECORD:
        return "crc"
    start = pos + FRAME2.size
    if start + length > end:
        return "incomplete"
    body = data[start : start + length]
    if zlib.crc32(body, zlib.crc32(data[pos + 4 : pos + 8])) != crc:
        return "crc"
    return FRAME2.size + length, body


def _v1_at(data: bytes, pos: int, end: int) -> tuple[int, bytes] | str:
    """The record at ``pos`` in the first framing (``<II`` length, CRC32), or why not."""
    if end - pos < FRAME.size:
        return "incomplete"
    length, crc = FRAME.unpack_from(data, pos)
    if length == 0 or length > MAX_RECORD:
        return "garbage"
    start = pos + FRAME.size
    if start + length > end:
        return "incomplete"
    body = data[start : start + length]
    if zlib.crc32(body) != crc:
        return "crc"
    return FRAME.size + length, body


def _next_v2(data: bytes, start: int, end: int) -> int | None:
    """Offset of the next intact record in the second framing at or after ``start``."""
    pos = start
    while True:
        found = data.find(MAGIC, pos, end)
        if found < 0:
            return None
        if isinstance(_v2_at(data, found, end), tuple):
            return found
        pos = found + 1


def _next_v1(data: bytes, start: int, end: int) -> int | None:
    """Offset of the next intact record in the first framing (tries every offset)."""
    for pos in range(start, end - FRAME.size):
        if isinstance(_v1_at(data, pos, end), tuple):
            return pos
    return None


def is_legacy(data: bytes) -> bool:
    """True when ``data`` is a record file in the first framing (no marked records)."""
    return bool(data) and not data.startswith(MAGIC) and _next_v2(data, 0, len(data)) is None


def scan_records(data: bytes) -> Iterator[tuple[int, int, bytes] | Damage]:
    """Every intact record as ``(offset, size, body)`` and every damaged region between
    them as a :class:`Damage`, in file order; reading resumes at the next intact record.

    Reads both framings (a file is in one of them). Unlike :func:`iter_bodies` it never
    stops early, so intact records after a damaged one are kept.
    """
    end = len(data)
    legacy = is_legacy(data)
    parse = _v1_at if legacy else _v2_at
    find_next = _next_v1 if legacy else _next_v2
    pos = 0
    while pos < end:
        got = parse(data, pos, end)
        if isinstance(got, tuple):
            size, body = got
            yield pos, size, body
            pos += size
            continue
        resume = find_next(data, pos + 1, end)
        stop = end if resume is None else resume
        region = data[pos:stop]
        reason = "zeros" if not region.strip(b"\0") else got
        records = max(1, region.count(MAGIC)) if not legacy else 1
        yield Damage(pos, stop - pos, reason, records, resume is None)
        pos = stop


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (a short write is retried; errors raise)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
