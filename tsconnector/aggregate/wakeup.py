"""Waking runners when there is new data: LISTEN/NOTIFY on PostgreSQL, polling on SQLite.

Writers call :func:`notify` inside the transaction that adds data (PostgreSQL sends the
notification at commit) and :func:`wake_local` after the commit (it wakes waiters of the
same process at once, on both backends). A :class:`Wakeup` waits for either, or for its
poll interval to pass: notifications are hints, a runner always looks for work itself
when the interval ends, so a lost notification delays work, never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

from ..catalog import CatalogError, Listener

if TYPE_CHECKING:
    from ..catalog import Database, Session

log = logging.getLogger("tsconnector.aggregate")

#: ``(store key, channel) -> waiters`` of this process.
_local: dict[tuple[str, str], weakref.WeakSet[Wakeup]] = {}


def store_channel(store_id: int) -> str:
    """The channel that says: store ``store_id`` has new messages."""
    return f"tsc_agg_s{store_id}"


def stream_channel(stream_id: int) -> str:
    """The channel that says: aggregated stream ``stream_id`` has new entries."""
    return f"tsc_agg_p{stream_id}"


def db_key(db: Database) -> str:
    """What identifies the database behind ``db`` within this process."""
    path = getattr(db, "path", None)
    if path is not None and not getattr(db, "memory", False):
        return f"sqlite:{path}"
    if db.dialect == "postgresql":
        return f"pg:{getattr(db, 'dsn', '')}:{getattr(db, 'schema', '')}"
    return f"obj:{id(db)}"


async def notify(session: Session, channel: str) -> None:
    """Send a notification on ``channel`` when ``session`` commits (PostgreSQL only)."""
    if session.db.supports_notify:
        await session.notify(channel, "")


def wake_local(db: Database, channel: str) -> None:
    """Wake this process's waiters on ``channel`` (call after the commit)."""
    waiters = _local.get((db_key(db), channel))
    if waiters:
        for waiter in list(waiters):
            waiter.poke()


class Wakeup:
    """Waits for notifications on some channels, or for ``poll_interval`` seconds."""

    def __init__(self, db: Database, channels: list[str], poll_interval: float) -> None:
        self.db = db
        self.channels = channels
        self.poll_interval = poll_interval
        self._event = asyncio.Event()
        self._listeners: list[Listener] = []
        self._registered = False

    def poke(self) -> None:
        """Make the current or next :meth:`wait` return at once."""
        self._event.set()

    async def start(self) -> None:
        """Register for local wake-ups and (PostgreSQL) LISTEN on the channels."""
        if not self._registered:
            key = db_key(self.db)
            for channel in self.channels:
                _local.setdefault((key, channel), weakref.WeakSet()).add(self)
            self._registered = True
        await self._listen()

    async def _listen(self) -> None:
        if not self.db.supports_notify:
            return
        if self._listeners and not any(listener.closed for listener in self._listeners):
            return
        await self._close_listeners()
        try:
            for channel in self.channels:
                self._listeners.append(await self.db.listen(channel, self._on_notify))
        except CatalogError as exc:  # poll until the next attempt
            log.warning("cannot LISTEN for new data (%s); polling instead", exc)
            await self._close_listeners()

    def _on_notify(self, _channel: str, _payload: str) -> None:
        self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for a wake-up or the poll interval (or ``timeout``); True if woken."""
        await self._listen()
        delay = self.poll_interval if timeout is None else min(timeout, self.poll_interval)
        try:
            await asyncio.wait_for(self._event.wait(), delay)
            woken = True
        except asyncio.TimeoutError:
            woken = False
        self._event.clear()
        return woken

    async def _close_listeners(self) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            try:
                await listener.close()
            except CatalogError:
                pass

    async def close(self) -> None:
        """Stop listening (idempotent)."""
        if self._registered:
            key = db_key(self.db)
            for channel in self.channels:
                waiters = _local.get((key, channel))
                if waiters is not None:
                    waiters.discard(self)
                    if not waiters:
                        _local.pop((key, channel), None)
            self._registered = False
        await self._close_listeners()

    async def __aenter__(self) -> Wakeup:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
