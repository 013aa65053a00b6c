"""One insert's worth of points on its way to the server."""

from __future__ import annotations

import asyncio
from typing import Any

from ..spool import SpoolRecord

__all__ = ["Batch"]


class Batch:
    """A batch: its points (``data``; None while only in the spool), how many, the
    writer ``position`` after it, its spool record, and its delivery state."""

    __slots__ = ("check", "data", "delivered", "done", "end", "isolate", "lost", "number",
                 "points", "record", "rejected", "replay", "task")

    def __init__(self, number: int, data: dict[str, Any] | None, points: int, end: int) -> None:
        self.number = number  # cut order
        self.data = data
        self.points = points
        self.end = end
        self.record: SpoolRecord | None = None
        self.check = False  # read back before sending (unknown outcome)
        self.replay = False  # its points were read back from the spool
        self.isolate = False  # send series one by one (the server rejected one)
        self.done: set[str] = set()  # series delivered
        self.rejected: set[str] = set()  # series given up
        self.delivered = False  # done with: delivered, or lost (``lost``)
        self.lost = False
        self.task: asyncio.Task[None] | None = None
