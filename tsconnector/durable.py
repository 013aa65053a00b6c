"""Durable record files: msgpack records framed with length and CRC32, and fsync helpers.

Shared by the embedded server's write-ahead log and the writer's spool. A record is
``<II`` (body length, CRC32 of the body) followed by the msgpack body; a reader stops at
the first torn or corrupt record, which is how a crash in the middle of a write shows.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "FRAME",
    "MAX_RECORD",
    "frame_body",
    "fsync_dir",
    "iter_bodies",
    "pack_record",
    "unpack_record",
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
