"""Copy accepted inserts to a *tee* (``alter database set tee 'host:port'``), as SiriDB does.

SiriDB 2.0.55 writes every valid insert of a database with a tee to one TCP connection,
as a package of its own framing: header ``<IHBB`` (payload length, pid 0, type 0, check
byte 0) and a qpack payload that is an *open* map of series names (raw, with a
terminating NUL byte) to open arrays of ``[ts, value]`` points, values as received.
Nothing is ever read back (incoming bytes are ignored). While there is no connection an
insert is not copied: it starts a connection attempt and is dropped (the first insert
after ``set tee`` is never teed), exactly like the real server. A failed attempt makes
``show tee`` report ``failed to make connection`` until the tee is set again.

:func:`tee_payload` builds the bytes; :class:`TeeForwarder` keeps the connection.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import qpack

__all__ = ["TEE_CONNECT_FAILED", "TeeForwarder", "tee_frame", "tee_payload"]

log = logging.getLogger(__name__)

_HEADER: Final = struct.Struct("<IHBB")
_OPEN_MAP: Final = b"\xfd"
_OPEN_ARRAY: Final = b"\xfc"
_CLOSE_ARRAY: Final = b"\xfe"
_POINT: Final = b"\xef"
TEE_CONNECT_FAILED: Final = "failed to make connection"


def tee_payload(series: Mapping[str, Sequence[Sequence[Any]]]) -> bytes:
    """The qpack payload SiriDB tees for validated ``{name: [[ts, value], ...]}``."""
    parts = [_OPEN_MAP]
    packb = qpack.packb
    for name, points in series.items():
        parts.append(packb(name.encode("utf-8", "surrogateescape") + b"\0"))
        parts.append(_OPEN_ARRAY)
        for ts, value in points:
            parts.append(_POINT)
            parts.append(packb(ts))
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogateescape")
            parts.append(packb(value))
        parts.append(_CLOSE_ARRAY)
    return b"".join(parts)


def tee_frame(payload: bytes) -> bytes:
    """A payload with the header SiriDB's tee writes (pid 0, type 0, check byte 0)."""
    return _HEADER.pack(len(payload), 0, 0, 0) + payload


class _TeeProtocol(asyncio.Protocol):
    def __init__(self, owner: TeeForwarder) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        log.debug("ignoring %d bytes from tee %s", len(data), self.owner.target)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self)


class TeeForwarder:
    """The tee connection of one database."""

    def __init__(self, on_error: Callable[[str], None] = lambda _: None) -> None:
        self.target: tuple[str, int] | None = None
        self.epoch = -1
        self.error: str | None = None
        self._on_error = on_error
        self._transport: asyncio.Transport | None = None
        self._protocol: _TeeProtocol | None = None
        self._connecting: asyncio.Task[None] | None = None

    def configure(self, target: tuple[str, int] | None, epoch: int = 0) -> None:
        """Follow the database's tee setting: every new ``set tee`` (a new ``epoch``,
        even to the same address) drops the connection and the error, as in SiriDB."""
        if target == self.target and epoch == self.epoch:
            return
        self.close()
        self.target = target
        self.epoch = epoch
        self.error = None

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def forward(self, payload: bytes) -> bool:
        """Send one insert payload; returns False when it was dropped (not connected)."""
        if self.target is None:
            return False
        if self.connected:
            assert self._transport is not None
            self._transport.write(tee_frame(payload))
            return True
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        return False

    async def _connect(self) -> None:
        target = self.target
        try:
            if target is None:
                return
            loop = asyncio.get_running_loop()
            try:
                transport, protocol = await loop.create_connection(
                    lambda: _TeeProtocol(self), target[0], target[1])
            except OSError as exc:
                log.warning("cannot connect to tee %s:%s (%s)", target[0], target[1], exc)
                if target == self.target:
                    self.error = TEE_CONNECT_FAILED
                    self._on_error(TEE_CONNECT_FAILED)
                return
            if target != self.target:
                transport.close()
                return
            assert isinstance(transport, asyncio.Transport)
            self._transport = transport
            self._protocol = protocol
            log.info("connection created to tee %s:%s", target[0], target[1])
        finally:
            self._connecting = None

    async def wait_connected(self) -> bool:
        """Wait for the connection attempt under way (if any); whether connected."""
        attempt = self._connecting
        if attempt is not None:
            await asyncio.shield(attempt)
        return self.connected

    def _lost(self, protocol: _TeeProtocol) -> None:
        if protocol is self._protocol:
            self._transport = None
            self._protocol = None

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._protocol = None
