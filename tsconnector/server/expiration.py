"""Drop expired shards on SiriDB's schedule.

SiriDB refreshes each database's expiration times (now minus ``expiration_num`` /
``expiration_log``) on every heartbeat (30 s) and drops the shards whose window ended
before them in its optimize task (every ``optimize_interval`` seconds, 3600 by
default, the first time one interval after start). Inserts meanwhile never write
points into an expired shard (see :meth:`~tsconnector.server.model.Database.insert`).

Drops go through ``Database.drop_shards``: a journal record, so the write-ahead log,
snapshots and recovery see them like any other change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from .model import Database

__all__ = ["DEFAULT_HEARTBEAT_INTERVAL", "DEFAULT_OPTIMIZE_INTERVAL", "ExpirationTask"]

DEFAULT_OPTIMIZE_INTERVAL: Final = 3600.0
DEFAULT_HEARTBEAT_INTERVAL: Final = 30.0

log = logging.getLogger(__name__)

#: Makes a database's journal records durable (the store's ``sync``), if it has one.
Syncer = Callable[[Database], Awaitable[None]]


def refresh(db: Database, now: float | None = None) -> None:
    """Recompute ``db``'s expiration times for ``now`` (seconds since the epoch)."""
    db.update_expiration(int((time.time() if now is None else now) * db.factor))


def drop_expired(db: Database, now: float | None = None) -> int:
    """Refresh the expiration times and drop the expired shards; returns how many."""
    refresh(db, now)
    keys = db.expired_shards()
    if not keys:
        return 0
    log.info("dropping %d expired shard(s) of %s", len(keys), db.name)
    db.drop_shards(keys)
    return len(keys)


class ExpirationTask:
    """Runs the heartbeat refresh and the optimize-time drops for every database."""

    def __init__(
        self,
        databases: Mapping[str, Database],
        sync: Syncer,
        *,
        optimize_interval: float = DEFAULT_OPTIMIZE_INTERVAL,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        self.databases = databases
        self.sync = sync
        self.paused = paused
        self.optimize_interval = optimize_interval
        self.heartbeat_interval = heartbeat_interval
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for db in self.databases.values():
            refresh(db)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(self.heartbeat_interval, self._heartbeat)),
            loop.create_task(self._every(self.optimize_interval, self._optimize)),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every(self, interval: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failure must not stop the schedule
                log.exception("expiration task failed")

    async def _heartbeat(self) -> None:
        for db in self.databases.values():
            refresh(db)

    async def _optimize(self) -> None:
        if self.paused():  # SiriDB pauses its optimize task in backup mode
            return
        for db in list(self.databases.values()):
            if drop_expired(db):
                await self.sync(db)
