"""I/O-free frame codec: 8-byte ``<IHBB`` header plus payload, decoded incrementally."""

from __future__ import annotations

from typing import NamedTuple

from .constants import HEADER, HEADER_SIZE, MAX_FRAME_SIZE, PID_MODULUS


class FrameError(Exception):
    """A byte stream that cannot be framed: wrong check byte or oversized length.

    A framing error poisons the stream (the next header cannot be found), so the
    connection that produced it must be closed. ``frames`` holds the complete frames
    that came before the bad header in the same ``feed`` call; they are valid and a
    peer may still answer them before closing.
    """

    def __init__(self, message: str, frames: list[Frame] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Frame] = frames if frames is not None else []


class Frame(NamedTuple):
    """One decoded package: its id, its type and its raw (still encoded) payload."""

    pid: int
    tp: int
    payload: bytes


def check_byte(tp: int) -> int:
    """The header's fourth byte: the type XOR 0xFF."""
    return tp ^ 0xFF


def encode_header(length: int, pid: int, tp: int) -> bytes:
    """Header for a payload of ``length`` bytes; the pid wraps at 65536."""
    return HEADER.pack(length, pid % PID_MODULUS, tp, tp ^ 0xFF)


def encode_frame(pid: int, tp: int, payload: bytes = b"") -> bytes:
    """A whole frame as one bytes object (header followed by payload)."""
    return HEADER.pack(len(payload), pid % PID_MODULUS, tp, tp ^ 0xFF) + payload


class FrameDecoder:
    """Turns an arbitrary sequence of byte chunks into frames.

    ``feed`` accepts frames split across reads and many frames in one read. A wrong
    check byte or a declared length over ``max_frame_size`` raises :class:`FrameError`;
    the decoder is unusable afterwards (as the stream is).
    """

    __slots__ = ("_buf", "_failed", "_pos", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_frame_size = max_frame_size
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add received bytes; return every frame completed by them, in order.

        Each payload is copied exactly once; when nothing is buffered, frames are cut
        straight from ``data`` and only an incomplete tail is kept.
        """
        if self._failed:
            raise FrameError("decoder failed earlier; the stream cannot be resynchronised")
        buf = self._buf
        if self._pos == len(buf):
            if buf:
                buf.clear()
                self._pos = 0
            src: bytes | bytearray | memoryview = data
        else:
            buf += data
            src = buf
        frames: list[Frame] = []
        pos = self._pos if src is buf else 0
        end = len(src)
        unpack_from = HEADER.unpack_from
        limit = self.max_frame_size
        with memoryview(src) as view:
            while end - pos >= HEADER_SIZE:
                length, pid, tp, check = unpack_from(view, pos)
                if check != tp ^ 0xFF:
                    self._failed = True
                    raise FrameError(
                        f"invalid check byte {check} for package type {tp} (pid {pid})", frames
                    )
                if length > limit:
                    self._failed = True
                    raise FrameError(
                        f"frame of {length} bytes exceeds the limit of {limit} bytes", frames
                    )
                stop = pos + HEADER_SIZE + length
                if stop > end:
                    break
                frames.append(Frame(pid, tp, bytes(view[pos + HEADER_SIZE : stop])))
                pos = stop
            if src is not buf:
                if pos < end:
                    buf += view[pos:]
                return frames
        if pos == end:
            buf.clear()
            self._pos = 0
        elif pos > 65536 and pos * 2 > end:
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
        return frames
