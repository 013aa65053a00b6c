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

import struct
from typing import Any

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
        stream cannot be followed past it; the connection must be closed); its
        ``payloads`` holds the whole packages that came before.
        """
        buf = self._buf
        buf += data
        payloads: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            length = HEADER.unpack_from(buf, pos)[0]
            if length > self.max_frame_size:
                error = TeeProtocolError(
                    f"tee package of {length} bytes exceeds the limit of {self.max_frame_size}"
                )
                error.payloads = payloads  # the whole packages before it are still good
                del buf[:]
                raise error
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            payloads.append(bytes(buf[pos + HEADER_SIZE : stop]))
            pos = stop
        if pos:
            del buf[:pos]
        return payloads


_I8, _I16, _I32, _I64 = (struct.Struct(f) for f in ("<b", "<h", "<i", "<q"))
_INTS = {0xE8: _I8, 0xE9: _I16, 0xEA: _I32, 0xEB: _I64}
_LENS = {
    0xE4: struct.Struct("<B"),
    0xE5: struct.Struct("<H"),
    0xE6: struct.Struct("<I"),
    0xE7: struct.Struct("<Q"),
}
_DOUBLE = struct.Struct("<d")
_FLOATS = {0x7D: -1.0, 0x7E: 0.0, 0x7F: 1.0}
_OPEN = -1  # the size of an open (``0xfc``/``0xfd``) container


class _Payload:
    """A cursor over one payload that reads only what an insert package may hold.

    Written in Python on purpose: the ``qpack`` C decoder can crash the process on
    malformed bytes, and a receiver must survive anything a peer sends.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _fail(self, what: str) -> TeeProtocolError:
        return TeeProtocolError(f"malformed tee payload at byte {self.pos}: {what}")

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def _take(self, n: int) -> bytes:
        stop = self.pos + n
        if stop > len(self.data):
            raise self._fail("truncated")
        chunk = self.data[self.pos : stop]
        self.pos = stop
        return chunk

    def container(self, first: int, fixed: int, open_marker: int) -> int:
        """The size of a fixed container starting at ``first`` (or ``_OPEN``)."""
        b = self.peek()
        if b is None:
            raise self._fail("truncated")
        if first <= b <= first + 5:
            self.pos += 1
            return b - first
        if b == open_marker:
            self.pos += 1
            return _OPEN
        raise self._fail(f"expected {'a map' if fixed else 'an array'}, got 0x{b:02x}")

    def close(self, marker: int) -> bool:
        """True (and consumed) when an open container ends here (or the payload does)."""
        b = self.peek()
        if b is None:
            return True
        if b == marker:
            self.pos += 1
            return True
        return False

    def value(self) -> Any:
        """An int, a float or raw bytes."""
        b = self.peek()
        if b is None:
            raise self._fail("truncated")
        self.pos += 1
        if b < 0x40:
            return b
        if b < 0x7C:
            return 63 - b
        if b in _FLOATS:
            return _FLOATS[b]
        if 0x80 <= b < 0xE4:
            return self._take(b - 0x80)
        if b in _LENS:
            (n,) = _LENS[b].unpack(self._take(_LENS[b].size))
            return self._take(n)
        if b in _INTS:
            return _INTS[b].unpack(self._take(_INTS[b].size))[0]
        if b == 0xEC:
            return _DOUBLE.unpack(self._take(8))[0]
        self.pos -= 1
        raise self._fail(f"unexpected token 0x{b:02x}")


def _name(raw: Any) -> str:
    if not isinstance(raw, bytes):
        raise TeeProtocolError(f"series name is {type(raw).__name__}, not raw bytes")
    if raw.endswith(b"\x00"):
        raw = raw[:-1]
    if not raw or b"\x00" in raw:
        raise TeeProtocolError(f"invalid series name {raw!r}")
    name: str = raw.decode("utf-8", "replace")
    return name


def _point(p: _Payload, name: str) -> tuple[int, Any]:
    size = p.container(0xED, 0, 0xFC)
    if size not in (2, _OPEN):
        raise p._fail(f"a point of {name!r} has {size} items")
    ts = p.value()
    if not isinstance(ts, int):
        raise p._fail(f"bad timestamp {ts!r} of {name!r}")
    value = p.value()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if size == _OPEN and not p.close(0xFE):
        raise p._fail(f"a point of {name!r} has more than 2 items")
    return ts, value


def decode_payload(payload: bytes) -> list[PointBatch]:
    """The batches (one per series, in package order) of one tee package's payload."""
    p = _Payload(bytes(payload))
    if p.peek() is None:
        return []
    pairs = p.container(0xF3, 1, 0xFD)
    batches = []
    seen = 0
    while pairs == _OPEN or seen < pairs:
        if pairs == _OPEN and p.close(0xFF):
            break
        seen += 1
        name = _name(p.value())
        size = p.container(0xED, 0, 0xFC)
        timestamps: list[int] = []
        values: list[Any] = []
        while size == _OPEN or len(timestamps) < size:
            if size == _OPEN and p.close(0xFE):
                break
            ts, value = _point(p, name)
            timestamps.append(ts)
            values.append(value)
        if timestamps:
            batches.append(PointBatch(name, tuple(timestamps), tuple(values)))
    return batches
