"""FaultProxy: a loopback TCP proxy that injects network faults between client and server.

It can drop every connection, stall forwarding while keeping sockets open (a half-open
peer), delay traffic, cut the next answer in the middle of a frame, and refuse new
connections. Meant for tests, the project's own and its users'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

__all__ = ["FaultProxy"]

log = logging.getLogger("tsconnector.testing.proxy")

_CHUNK = 1 << 16


class _Link:
    """One proxied connection: the client side, the server side and a stall switch."""

    def __init__(self, client: asyncio.StreamWriter, stalled: bool) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.flowing = asyncio.Event()
        if not stalled:
            self.flowing.set()

    def abort(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None and not writer.transport.is_closing():
                writer.transport.abort()


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port`` with switchable faults.

    Use as ``async with FaultProxy(host, port) as proxy:`` and connect to
    ``proxy.port``. All fault switches are plain methods and take effect at once.
    """

    def __init__(
        self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._delay = 0.0
        self._refusing = False
        self._stall_new = False
        self._cut_after: int | None = None
        #: Connections accepted since start (refused ones included).
        self.accepted = 0
        #: Connections refused while :meth:`refuse_new` was on.
        self.refused = 0

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> FaultProxy:
        """Start listening; ``port`` is known afterwards."""
        self._server = await asyncio.start_server(self._handle, self.host, self._requested_port)
        return self

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to put in a hostlist."""
        return (self.host, self.port)

    @property
    def connections(self) -> int:
        """Connections currently proxied."""
        return len(self._links)

    async def close(self) -> None:
        """Stop listening, drop every connection and wait for the forwarding tasks."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.flowing.set()
            link.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ faults

    def drop_all(self) -> int:
        """Abort every proxied connection at once (both sides); returns how many."""
        links = list(self._links)
        for link in links:
            link.flowing.set()
            link.abort()
        return len(links)

    def stall(self, *, new_connections: bool = False) -> None:
        """Stop forwarding on the current connections but keep their sockets open.

        With ``new_connections`` connections made later are stalled too (a server that
        accepts but never answers).
        """
        for link in self._links:
            link.flowing.clear()
        self._stall_new = new_connections

    def resume(self) -> None:
        """Forward again everywhere (held data is delivered)."""
        self._stall_new = False
        for link in self._links:
            link.flowing.set()

    def set_delay(self, seconds: float) -> None:
        """Hold each chunk ``seconds`` before forwarding it (both directions)."""
        self._delay = max(0.0, seconds)

    def cut_mid_frame(self, keep: int = 5) -> None:
        """Forward only ``keep`` bytes of the next server answer, then drop that connection."""
        self._cut_after = max(0, keep)

    def refuse_new(self, refuse: bool = True) -> None:
        """Accept-and-reset new connections while on (existing ones are untouched)."""
        self._refusing = refuse

    def kill(self) -> int:
        """Simulate a dead server: refuse new connections and drop the current ones."""
        self.refuse_new(True)
        return self.drop_all()

    def revive(self) -> None:
        """Undo :meth:`kill`, :meth:`stall` and :meth:`set_delay`."""
        self.refuse_new(False)
        self.set_delay(0.0)
        self.resume()

    # -------------------------------------------------------------- forwarding

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            self.refused += 1
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = _Link(writer, self._stall_new)
        self._links.add(link)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError as exc:
                log.debug("proxy cannot reach %s:%s: %s", self.target_host, self.target_port, exc)
                return
            link.server = up_writer
            upstream = asyncio.create_task(
                self._pump(link, reader, up_writer, to_client=False), name="tsconnector: proxy"
            )
            self._tasks.add(upstream)
            try:
                await self._pump(link, up_reader, writer, to_client=True)
            finally:
                link.abort()
                await asyncio.gather(upstream, return_exceptions=True)
                self._tasks.discard(upstream)
        finally:
            link.abort()
            self._links.discard(link)
            self._tasks.discard(task)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        to_client: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if self._delay:
                    await asyncio.sleep(self._delay)
                await link.flowing.wait()
                if writer.transport.is_closing():
                    break
                if to_client and self._cut_after is not None:
                    keep, self._cut_after = self._cut_after, None
                    writer.write(data[: min(keep, max(len(data) - 1, 0))])
                    writer.close()  # flushes the partial frame, then closes
                    if link.server is not None:
                        link.server.transport.abort()
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            link.abort()
