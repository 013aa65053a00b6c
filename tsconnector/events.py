"""Host states, state-change events and per-host statistics of a client's pool.

Users observe the pool through callbacks (:meth:`EventHub.subscribe`) or an async
iterator (:meth:`EventHub.stream`); both are fed synchronously, without tasks.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

__all__ = ["EventHub", "HostEvent", "HostState", "HostStats"]

log = logging.getLogger("tsconnector.events")


class HostState(str, enum.Enum):
    """Where a host stands in the pool."""

    #: No connection; a background reconnect may be pending.
    DOWN = "down"
    #: A connection attempt (TCP + auth) is running.
    CONNECTING = "connecting"
    #: Connected and authenticated; chosen for requests.
    READY = "ready"
    #: Connected but skipped for ``inactive_time`` after a ServerError or failure.
    INACTIVE = "inactive"
    #: The client was closed.
    CLOSED = "closed"


@dataclass(frozen=True)
class HostEvent:
    """One state change of one host; ``error`` is the cause where there is one."""

    host: str
    port: int
    old: HostState
    new: HostState
    time: float
    error: BaseException | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the host."""
        return f"{self.host}:{self.port}"


@dataclass
class HostStats:
    """Counters of one host, as returned by ``TsClient.stats()``."""

    host: str
    port: int
    weight: int
    backup: bool
    state: HostState
    requests: int = 0
    failures: int = 0
    reconnects: int = 0
    last_latency: float | None = None
    last_error: str | None = None
    #: Requests waiting for an answer on this host's connection now.
    in_flight: int = 0
    #: With ``discover=True``: the server's SiriDB name (``address:port``), its pool and
    #: status, and whether discovery added the host (it is not in the user's hostlist).
    server_name: str | None = None
    pool: int | None = None
    status: str | None = None
    discovered: bool = False


Callback = Callable[[HostEvent], None]


class EventHub:
    """Delivers host events to callbacks and async-iterator subscribers."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._callbacks: list[Callback] = []
        self._queues: list[asyncio.Queue[HostEvent | None]] = []
        self._queue_size = queue_size

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` on every state change; returns an unsubscribe function."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def stream(self) -> AsyncIterator[HostEvent]:
        """An async iterator of events from now on, until the hub is closed.

        It subscribes at once (not at the first ``__anext__``), so no event between this
        call and the first iteration is missed; on overflow the oldest event is dropped.
        """
        queue: asyncio.Queue[HostEvent | None] = asyncio.Queue(self._queue_size)
        self._queues.append(queue)
        return _EventStream(self, queue)

    def _unsubscribe_queue(self, queue: asyncio.Queue[HostEvent | None]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def emit(self, event: HostEvent) -> None:
        """Hand ``event`` to every subscriber; a failing callback is logged, not raised."""
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("host event callback %r failed", callback)
        for queue in self._queues:
            _put_dropping_oldest(queue, event)

    def close(self) -> None:
        """End every async iterator (they stop after the events already queued)."""
        for queue in self._queues:
            _put_dropping_oldest(queue, None)


def _put_dropping_oldest(queue: asyncio.Queue[HostEvent | None], item: HostEvent | None) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


class _EventStream:
    """Async iterator over one subscriber queue of an :class:`EventHub`."""

    def __init__(self, hub: EventHub, queue: asyncio.Queue[HostEvent | None]) -> None:
        self._hub = hub
        self._queue = queue
        self._done = False

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> HostEvent:
        if self._done:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Stop receiving events."""
        self._done = True
        self._hub._unsubscribe_queue(self._queue)

    async def aclose(self) -> None:
        """Async alias of :meth:`close` (for ``contextlib.aclosing``)."""
        self.close()
