"""I/O-free reading of what SiriDB's tee sends: insert packages, one after another.

SiriDB 2.0.55 (``src/siri/db/tee.c``, ``insert.c``) copies each insert package a server
accepts for its own pool, byte for byte, to the tee connection: the 8-byte header
``<IHBB`` (payload length, pid, type, check byte) and a qpack payload mapping series
names to ``[[ts, value], ...]``. The package is the pool's part of the insert (after the
split by pool), so a cluster of several pools sends each point once, from the server
of its pool, on that server's own connection. The header's pid, type and check byte
are those of an internal package (pid 0, type 0 and check byte 0 for the server that
received the client's insert; the sender's values for a package from another pool), so
they are not checked here; the length frames the stream. The payload uses qpack's
*open* map and arrays; series names are raw bytes ending in one NUL byte; string values
are raw bytes.
"""

from __future__ import annotations

from typing import Any

import qpack  # type: ignore[import-untyped]

from ..protocol import HEADER, HEADER_SIZE, MAX_FRAME_SIZE
from .errors import TeeProtocolError
from .interfaces import PointBatch


class TeeDecoder:
    """Cuts a tee byte stream into package payloads (read them with :func:`decode_payload`)."""

    __slots__ = ("_buf", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._buf = bytearray()
        self.max_frame_size = max_frame_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole package."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add bytes; return the payload of every package they complete, in order.

        A declared length over ``max_frame_size`` raises :class:`TeeProtocolError` (the
        stream cannot be followed past it; the connection must be closed).
        """
        buf = self._buf
        buf += data
        payloads: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            length = HEADER.unpack_from(buf, pos)[0]
            if length > self.max_frame_size:
                raise TeeProtocolError(
                    f"tee package of {length} bytes exceeds the limit of {self.max_frame_size}"
                )
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            payloads.append(bytes(buf[pos + HEADER_SIZE : stop]))
            pos = stop
        if pos:
            del buf[:pos]
        return payloads


def _name(raw: Any) -> str:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if not isinstance(raw, (bytes, bytearray)):
        raise TeeProtocolError(f"series name is {type(raw).__name__}, not raw bytes")
    if raw.endswith(b"\x00"):
        raw = raw[:-1]
    if not raw or b"\x00" in raw:
        raise TeeProtocolError(f"invalid series name {bytes(raw)!r}")
    return bytes(raw).decode("utf-8", "replace")


def _value(raw: Any) -> Any:
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "replace")
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise TeeProtocolError(f"unsupported point value {raw!r}")
    return raw


def decode_payload(payload: bytes) -> list[PointBatch]:
    """The batches (one per series, in package order) of one tee package's payload."""
    try:
        data = qpack.unpackb(payload)
    except Exception as exc:  # the C extension raises several kinds
        raise TeeProtocolError(f"undecodable tee payload ({exc})") from exc
    if not isinstance(data, dict):
        raise TeeProtocolError(f"tee payload is a {type(data).__name__}, not a map")
    batches = []
    for raw_name, points in data.items():
        name = _name(raw_name)
        if not isinstance(points, list):
            raise TeeProtocolError(f"points of {name!r} are not an array")
        timestamps = []
        values = []
        for point in points:
            if not isinstance(point, list) or len(point) != 2:
                raise TeeProtocolError(f"bad point {point!r} of {name!r}")
            ts = point[0]
            if isinstance(ts, bool) or not isinstance(ts, int):
                raise TeeProtocolError(f"bad timestamp {ts!r} of {name!r}")
            timestamps.append(ts)
            values.append(_value(point[1]))
        if timestamps:
            batches.append(PointBatch(name, tuple(timestamps), tuple(values)))
    return batches
