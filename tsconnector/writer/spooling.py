"""The writer's side of the spool: its I/O thread, group commits, and what it lost.

Spool writes run on one worker thread, so they stay in order and fsyncs never block
the event loop; batches cut together are written with one fsync. Series the spool
cannot encode (unchecked input) are found and handed back, so they alone are given up.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..spool import Spool, SpoolCorrupted, SpoolDamage, SpoolRecord, unencodable_series

__all__ = ["SpoolChannel", "damage_error"]


class SpoolChannel:
    """A :class:`~tsconnector.spool.Spool` used from the event loop."""

    def __init__(self, directory: str | Path, segment_bytes: int) -> None:
        self.spool = Spool(directory, segment_bytes=segment_bytes)
        self._io: ThreadPoolExecutor | None = None

    async def open(self) -> list[SpoolRecord]:
        """Lock and recover the spool; the batches a previous process left."""
        self._io = ThreadPoolExecutor(1, thread_name_prefix="tsconnector-spool")
        return await asyncio.get_running_loop().run_in_executor(self._io, self.spool.open)

    @property
    def position(self) -> int:
        return self.spool.position

    @property
    def damage(self) -> list[SpoolDamage]:
        return self.spool.damage

    @property
    def size_bytes(self) -> int:
        return self.spool.size_bytes

    async def append(
        self, batches: Sequence[tuple[dict[str, Any], int]]
    ) -> tuple[list[SpoolRecord], list[tuple[str, BaseException, Any]]]:
        """Write ``(data, points)`` batches with one fsync; returns their records and the
        series left out because the spool cannot encode them (removed from ``data``;
        their points still advance the position). ``OSError``: nothing was written."""
        loop = asyncio.get_running_loop()
        items = [(data, points, 0) for data, points in batches]
        try:
            return await loop.run_in_executor(
                self._io, self.spool.append_many, items
            ), []
        except OSError:
            raise
        except Exception:  # a value the spool cannot encode: find the series at fault
            bad: list[tuple[int, str, BaseException, Any]] = []
            fixed = []
            for index, (data, points, _) in enumerate(items):
                skipped = 0
                for name, exc in unencodable_series(data).items():
                    piece = data.pop(name)
                    bad.append((index, name, exc, piece))
                    skipped += _count(piece)
                fixed.append((data, points - skipped, skipped))
            if not bad:
                raise
            try:
                records = await loop.run_in_executor(
                    self._io, functools.partial(self.spool.append_many, fixed)
                )
            except BaseException:
                for index, name, _, piece in bad:  # nothing was written: put them back
                    items[index][0][name] = piece
                raise
            return records, [(name, exc, piece) for _, name, exc, piece in bad]

    def read(self, record: SpoolRecord) -> dict[str, Any]:
        return self.spool.read(record)

    def ack(self, record: SpoolRecord) -> None:
        self.spool.ack(record)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._io, self.spool.close)
        if self._io is not None:
            self._io.shutdown(wait=False)


def _count(piece: Any) -> int:
    return len(piece[0]) if isinstance(piece, tuple) else len(piece)


def damage_error(item: SpoolDamage) -> SpoolCorrupted:
    """The error reported for points a previous process's spool lost to damaged bytes."""
    lost = ("an unknown number of points" if item.lost_points is None
            else f"{item.lost_points} point(s) in {item.lost_batches} batch(es)")
    return SpoolCorrupted(
        f"spool segment {item.segment} is damaged at offset {item.offset} "
        f"({item.size} bytes): {lost} lost; the records after it are kept",
        [item],
    )
