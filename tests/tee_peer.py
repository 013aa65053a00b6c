"""A stand-in for SiriDB's tee, for the tee receiver tests.

``TeeProxy`` sits between clients and a server and forwards every byte both ways; in
addition it copies each insert request to a tee peer the way SiriDB 2.0.55 does
(``src/siri/db/tee.c``): header ``<IHBB`` with pid 0, type 0 and check byte 0, then a
qpack *open* map of NUL-terminated raw series names to open arrays of ``[ts, value]``.
Like SiriDB it never waits for the tee: while it has no tee connection a package is
dropped and a connection attempt starts (the insert that triggers the connection is
lost). ``disconnect_tee()`` closes the tee connection (a network blip).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import qpack

from tsconnector.protocol import FrameDecoder, RequestType

_HEADER = struct.Struct("<IHBB")


def tee_package(insert_payload: bytes) -> bytes:
    """The bytes SiriDB's tee writes for a client's insert payload (one pool)."""
    data = qpack.unpackb(insert_payload)
    if isinstance(data, list):  # [{"name": ..., "points": ...}] form
        data = {
            d[b"name"] if b"name" in d else d["name"]: d.get(b"points", d.get("points"))
            for d in data
        }
    body = [b"\xfd"]
    for name, points in data.items():
        raw = name if isinstance(name, bytes) else name.encode()
        body.append(qpack.packb(raw + b"\x00"))
        body.append(b"\xfc")
        for ts, value in points:
            body.append(qpack.packb([ts, value.encode() if isinstance(value, str) else value]))
        body.append(b"\xfe")
    payload = b"".join(body)
    return _HEADER.pack(len(payload), 0, 0, 0) + payload


class TeeProxy:
    """Client <-> server forwarding plus SiriDB-style tee copies of inserts."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.tee: tuple[str, int] | None = None
        self.dropped = 0
        self.sent = 0
        self._tee_writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> TeeProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def set_tee(self, host: str, port: int) -> None:
        """``alter database set tee 'host:port'``: a new target drops the old connection."""
        self.disconnect_tee()
        self.tee = (host, port)

    def disconnect_tee(self) -> None:
        if self._tee_writer is not None:
            self._tee_writer.transport.abort()
        self._tee_writer = None

    def _copy(self, payload: bytes) -> None:
        writer = self._tee_writer
        if writer is not None and not writer.transport.is_closing():
            writer.write(tee_package(payload))
            self.sent += 1
            return
        self.dropped += 1
        if self.tee is not None and self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            assert self.tee is not None
            try:
                _, writer = await asyncio.open_connection(*self.tee)
            except OSError:
                return
            self._tee_writer = writer
        finally:
            self._connecting = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.server_port)
        back = asyncio.create_task(self._pump(up_reader, writer))
        self._tasks.add(back)
        decoder = FrameDecoder()
        try:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    if frame.tp == RequestType.INSERT:
                        self._copy(frame.payload)
                up_writer.write(data)
                await up_writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            up_writer.close()
            back.cancel()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        self.disconnect_tee()
        if self._connecting is not None:
            self._connecting.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
