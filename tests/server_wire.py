"""Raw-protocol test client for the embedded server tests (no dependency on the client)."""

from __future__ import annotations

import asyncio
from typing import Any

import qpack

from tsconnector.protocol import AnswerType, Frame, FrameDecoder, RequestType, encode_frame


class RawClient:
    """One TCP connection speaking raw frames; answers are collected by a reader task."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()  # None: EOF
        self.eof = asyncio.Event()
        self.raw = bytearray()
        self._task = asyncio.get_running_loop().create_task(self._read())
        self._pid = 0

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    break
                self.raw += data
                for frame in self.decoder.feed(data):
                    self.frames.put_nowait(frame)
        except (ConnectionError, OSError):
            pass
        finally:
            self.eof.set()
            self.frames.put_nowait(None)

    def next_pid(self) -> int:
        self._pid = (self._pid + 1) % 65536
        return self._pid

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, tp: int, payload: Any = None, pid: int | None = None, *,
             raw: bool = False) -> int:
        pid = self.next_pid() if pid is None else pid
        body = (payload or b"") if raw else (b"" if payload is None else qpack.packb(payload))
        self.writer.write(encode_frame(pid, tp, body))
        return pid

    async def recv(self, timeout: float = 5.0) -> Frame:
        """The next answer; ``ConnectionError`` once the server closed the connection."""
        frame = await asyncio.wait_for(self.frames.get(), timeout)
        if frame is None:
            self.frames.put_nowait(None)
            raise ConnectionError("connection closed by the server")
        return frame

    async def request(self, tp: int, payload: Any = None, *, raw: bool = False,
                      timeout: float = 10.0) -> tuple[int, Any]:
        """Send one request and wait for its answer; returns ``(type, decoded payload)``."""
        pid = self.send(tp, payload, raw=raw)
        frame = await self.recv(timeout)
        assert frame.pid == pid, (frame, pid)
        data = qpack.unpackb(frame.payload, decode="utf-8") if frame.payload else None
        return frame.tp, data

    async def auth(self, user: str = "iris", password: str = "siri",
                   db: str = "dbtest") -> int:
        tp, _ = await self.request(RequestType.AUTH, [user, password, db])
        return tp

    async def query(self, q: str, precision: int | None = None) -> tuple[int, Any]:
        return await self.request(RequestType.QUERY, [q, precision])

    async def insert(self, data: Any) -> tuple[int, Any]:
        return await self.request(RequestType.INSERT, data)

    async def ping(self, timeout: float = 5.0) -> None:
        tp, _ = await self.request(RequestType.PING, timeout=timeout)
        assert tp == AnswerType.RES_ACK

    async def silent(self, window: float = 0.3) -> bool:
        """True when nothing arrives within ``window`` seconds."""
        try:
            frame = await asyncio.wait_for(self.frames.get(), window)
        except asyncio.TimeoutError:
            return True
        if frame is None:
            self.frames.put_nowait(None)
        return False

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        try:
            await asyncio.wait_for(self.eof.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
