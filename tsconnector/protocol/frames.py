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


class OversizedFrame(NamedTuple):
    """The header of a frame over the decoder's limit whose payload is being skipped."""

    pid: int
    tp: int
    length: int


class FrameDecoder:
    """Turns an arbitrary sequence of byte chunks into frames.

    ``feed`` accepts frames split across reads and many frames in one read. A wrong
    check byte raises :class:`FrameError`; so does a declared length over
    ``max_frame_size`` unless ``skip_oversized``: then the frame's payload is discarded
    as it arrives (never buffered), its header is added to :attr:`oversized`, and the
    stream stays usable. After a FrameError the decoder is unusable (as the stream is).
    """

    __slots__ = ("_buf", "_failed", "_pos", "_skip", "max_frame_size", "oversized",
                 "skip_oversized")

    def __init__(
        self, max_frame_size: int = MAX_FRAME_SIZE, *, skip_oversized: bool = False
    ) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_frame_size = max_frame_size
        self.skip_oversized = skip_oversized
        self._failed = False
        self._skip = 0
        #: Headers of oversized frames seen so far (the caller clears the list).
        self.oversized: list[OversizedFrame] = []

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) - self._pos

    @property
    def skipping(self) -> int:
        """Bytes of an oversized frame still to be discarded."""
        return self._skip

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add received bytes; return every frame completed by them, in order.

        Each payload is copied exactly once; when nothing is buffered, frames are cut
        straight from ``data`` and only an incomplete tail is kept.
        """
        if self._failed:
            raise FrameError("decoder failed earlier; the stream cannot be resynchronised")
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = memoryview(data)[self._skip :]
            self._skip = 0
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
                stop = pos + HEADER_SIZE + length
                if length > limit:
                    if not self.skip_oversized:
                        self._failed = True
                        raise FrameError(
                            f"frame of {length} bytes exceeds the limit of {limit} bytes", frames
                        )
                    self.oversized.append(OversizedFrame(pid, tp, length))
                    if stop > end:
                        self._skip = stop - end
                        pos = end
                        break
                    pos = stop
                    continue
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
