"""``JournalWriter``: buffers points and writes them through the journal in groups."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

from .interfaces import MessagePosition, PointBatch, batch_points
from .journal import write_group

if TYPE_CHECKING:
    from .store import MessageStore


class JournalWriter:
    """Buffers ``add(series, points)`` and writes through the journal in groups.

    A group is written when it reaches ``max_points`` or ``flush_interval`` seconds after
    its first point, by :meth:`flush`, and by :meth:`close`. Writing is exactly once
    per point (see the module docstring). An error of a background write is raised by
    the next ``add``/``flush``/``close``; its points stay in the journal for recovery.
    """

    def __init__(
        self, store: MessageStore, *, max_points: int = 10_000, flush_interval: float = 0.05
    ) -> None:
        if max_points < 1 or flush_interval < 0:
            raise ValueError("max_points must be >= 1 and flush_interval >= 0")
        self.store = store
        self.max_points = max_points
        self.flush_interval = flush_interval
        self._pending: list[PointBatch] = []
        self._pending_points = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self.positions: list[MessagePosition] = []
        self.stats: Counter[str] = Counter()

    async def __aenter__(self) -> JournalWriter:
        await self.store.open()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def add(self, series: str, points: Any) -> None:
        """Buffer points of ``series`` (``[[ts, value], ...]`` or a batch)."""
        if self._closed:
            raise RuntimeError("the journal writer is closed")
        self._raise_error()
        batch = batch_points(series, points)
        if not len(batch):
            return
        self._pending.append(batch)
        self._pending_points += len(batch)
        if self._pending_points >= self.max_points:
            await self._write_pending()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        try:
            await asyncio.sleep(self.flush_interval)
            await self._write_pending()
        except Exception as exc:  # reported by the next call
            self._error = exc
        finally:
            if self._timer is asyncio.current_task():
                self._timer = None

    async def _write_pending(self) -> None:
        async with self._lock:
            group, self._pending, self._pending_points = self._pending, [], 0
            if group:
                positions = await write_group(self.store, group)
                self.positions.extend(positions)
                self.stats["groups"] += 1
                self.stats["points"] += sum(len(b) for b in group)

    async def flush(self) -> None:
        """Write everything buffered now and wait until it is stored."""
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
            try:
                await timer
            except asyncio.CancelledError:
                pass
        self._raise_error()
        await self._write_pending()

    async def close(self) -> None:
        """Flush and stop accepting points (idempotent)."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
